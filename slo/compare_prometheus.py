"""The two variants' figures from Prometheus, in two fixed batches whatever the window.

Both deployments are read by the same queries (`namespace=~"a|b"`, `deployment=~"x|y"`,
grouped `by (namespace, deployment)`; answers are kept by their exact pair):

1. instant queries over the window: engine identity, how often each pod was scraped, finished
   requests by reason, the TTFT, TPOT and e2e bucket increases by engine and `le`, generated
   tokens and preemptions (8 queries);
2. range queries at the resolution the scrape interval allows (`resolution`), each step's
   figure over that step: the fullest pod's KV-cache usage, generated tokens/s, GPUs and
   serving pods, and the increases the tests read per step (finished requests by reason,
   preemptions, the three histograms' buckets) (9 queries).

A deployment without `llm_engine_info` in the window, or without finished-request counts (the
window holds fewer than two scrapes), is `NotFound`; one more query then tells apart a
deployment that exists but has no data in the window from one that does not exist at all.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from inferwatch.alerts import promql
from inferwatch.alerts.promql import Matcher
from inferwatch.slo import compare_queries as cq
from inferwatch.slo.compare import compare
from inferwatch.slo.compare_models import (
    LATENCY,
    CompareInputError,
    Comparison,
    Layout,
    Ref,
    Thresholds,
    Variant,
    Window,
    duration_text,
    validate_window,
)
from inferwatch.slo.figures import parse_le
from inferwatch.slo.from_prometheus import Steps, narrowed
from inferwatch.slo.prom import Deadline, Prometheus, Query, RangeSeries, Sample
from inferwatch.slo.service import NotFound

STEPS = 60  # per-step figures: at most this many steps over the window
SCRAPES_PER_STEP = 4  # each step's rate reads about this many scrapes
DEFAULT_INTERVAL = 15.0  # seconds, when the scrape interval cannot be read
PROBE = "5m"  # the scrape interval is read over the last 5 minutes
LOOKBACK = "7d"  # how far back a deployment missing from the window is looked for

Key = tuple[str, str]


def first_round(window: str, matchers: Sequence[Matcher], at: float) -> dict[str, Query]:
    g = cq.GROUP
    out = {
        "info": Query(cq.engine_info(window, matchers), at),
        "samples": Query(cq.samples_per_pod(_probe(window), g, matchers), at),
        "finished": Query(cq.finished(window, g, matchers), at),
        "generation_tokens": Query(cq.counter("generation_tokens", window, g, matchers), at),
        "preemptions": Query(cq.counter("preemptions", window, g, matchers), at),
    }
    for key in LATENCY:
        out[f"buckets/{key}"] = Query(cq.buckets(key, window, g, matchers), at)
    return out


def second_round(steps: Steps, matchers: Sequence[Matcher]) -> dict[str, Query]:
    g, step = cq.GROUP, steps.step
    out = {
        "kv": steps.range(cq.kv_cache(g, matchers)),
        "rate": steps.range(cq.generation_rate(step, g, matchers)),
        "gpus": steps.range(cq.gpus(g, matchers)),
        "pods": steps.range(cq.pods(g, matchers)),
        "preemptions": steps.range(cq.counter("preemptions", step, g, matchers)),
        "finished": steps.range(cq.finished(step, g, matchers)),
    }
    for key in LATENCY:
        out[f"buckets/{key}"] = steps.range(cq.buckets(key, step, g, matchers))
    return out


def _probe(window: str) -> str:
    """Where the scrape interval is read: the last 5 minutes (or the window, if shorter)."""
    return window if promql.seconds(window) < promql.seconds(PROBE) else PROBE


def resolution(window: str, samples: Iterable[Sample]) -> str:
    """Per-step figures' resolution: the window in at most `STEPS` steps, each long enough for
    `SCRAPES_PER_STEP` scrapes."""
    counts = [s.value for s in samples if math.isfinite(s.value) and s.value > 0]
    # The pod scraped most often tells the interval best: a pod younger than the probe has
    # fewer samples because it was there for less of it, not because it is scraped less often.
    interval = promql.seconds(_probe(window)) / max(counts) if counts else DEFAULT_INTERVAL
    seconds = promql.seconds(window)
    return duration_text(max(seconds / STEPS, SCRAPES_PER_STEP * interval, 1.0))


def _key(labels: dict[str, str]) -> Key:
    return labels.get("namespace", ""), labels.get("deployment", "")


def read(
    prom: Prometheus,
    baseline: Ref,
    candidate: Ref,
    window: str,
    deadline: Deadline,
    at: float,
) -> tuple[Variant, Variant, Window]:
    """Both variants' figures over the window ending at `at`."""
    validate_window(window)
    if baseline == candidate:
        raise CompareInputError(f"baseline and candidate are the same deployment ({baseline.name})")
    refs = (baseline, candidate)
    matchers = narrowed([], map(_key_of, refs))
    first = prom.batch(first_round(window, matchers, at), deadline)
    variants = {(r.namespace, r.deployment): Variant(r) for r in refs}
    _info(first["info"], variants)  # type: ignore[arg-type]
    missing = [v.ref for v in variants.values() if not v.engines]
    if missing:
        raise NotFound(_missing(prom, missing, window, deadline, at))
    _finished(first["finished"], variants)  # type: ignore[arg-type]
    no_counts = [v.ref for v in variants.values() if not v.finished]
    if no_counts:
        names = " and ".join(r.name for r in no_counts)
        raise NotFound(
            f"no finished-request counts of {names} within the last {window} "
            "(llm_requests_finished_total): the window holds no data to compare; a counter "
            "needs two scrapes in it"
        )
    for name in ("generation_tokens", "preemptions"):
        for s in first[name]:
            v = variants.get(_key(s.labels))
            if v is not None and math.isfinite(s.value):
                v.counters[name] = v.counters.get(name, 0.0) + s.value
    for key in LATENCY:
        _buckets(key, first[f"buckets/{key}"], variants)  # type: ignore[arg-type]
    res = resolution(window, [s for s in first["samples"] if _key(s.labels) in variants])  # type: ignore[misc]
    steps = Steps(window, res, at)
    second = prom.batch(second_round(steps, matchers), deadline)
    for name in ("kv", "rate", "gpus", "pods", "preemptions"):
        for _s, v, t, value in _points(second[name], variants):
            points = v.steps.setdefault(name, {})
            points[t] = points.get(t, 0.0) + value
    for s, v, t, value in _points(second["finished"], variants):
        by_reason = v.step_finished.setdefault(t, {})
        reason = s.labels.get("reason", "")
        by_reason[reason] = by_reason.get(reason, 0.0) + value
    for key in LATENCY:
        for s, v, t, value in _points(second[f"buckets/{key}"], variants):
            per_step = v.step_histograms.setdefault(key, {}).setdefault(t, {})
            _add_bucket(per_step, s.labels, value)
    return variants[_key_of(baseline)], variants[_key_of(candidate)], Window(window, res, at)


def _key_of(ref: Ref) -> Key:
    return ref.namespace, ref.deployment


def _info(samples: Iterable[Sample], variants: dict[Key, Variant]) -> None:
    engines: dict[Key, set[str]] = defaultdict(set)
    models: dict[Key, set[str]] = defaultdict(set)
    for s in samples:
        key = _key(s.labels)
        if key in variants:
            engines[key].add(s.labels.get("engine") or "unknown")
            if s.labels.get("model"):
                models[key].add(s.labels["model"])
    for key, v in variants.items():
        v.engines = tuple(sorted(engines.get(key, ())))
        v.models = tuple(sorted(models.get(key, ())))


def _finished(samples: Iterable[Sample], variants: dict[Key, Variant]) -> None:
    for s in samples:
        v = variants.get(_key(s.labels))
        if v is not None and math.isfinite(s.value):
            reason = s.labels.get("reason", "")
            v.finished[reason] = v.finished.get(reason, 0.0) + s.value


def _points(
    series: Iterable[Sample | RangeSeries], variants: dict[Key, Variant]
) -> Iterator[tuple[RangeSeries, Variant, float, float]]:
    """Every point of the range series of the compared deployments (a value that is not a
    finite number, which no engine should report, is left out rather than poisoning a mean)."""
    for s in series:
        v = variants.get(_key(s.labels))
        if v is None or not isinstance(s, RangeSeries):
            continue
        for t, value in s.points:
            if math.isfinite(value):
                yield s, v, t, value


def _add_bucket(engines: dict[str, Layout], labels: dict[str, str], value: float) -> None:
    """One bucket's count into its engine's layout (a label that is no boundary is skipped)."""
    text = labels.get("le")
    if text is None:
        return
    try:
        le = parse_le(text)
    except ValueError:
        return
    layout = engines.setdefault(labels.get("engine", ""), {})
    _text, count = layout.get(le, (text, 0.0))
    layout[le] = (text, count + value)


def _buckets(histogram: str, samples: Iterable[Sample], variants: dict[Key, Variant]) -> None:
    for s in samples:
        v = variants.get(_key(s.labels))
        if v is not None and math.isfinite(s.value):
            _add_bucket(v.histograms.setdefault(histogram, {}), s.labels, s.value)


def _missing(
    prom: Prometheus, refs: Sequence[Ref], window: str, deadline: Deadline, at: float
) -> str:
    """Why these deployments have nothing to compare: no data in the window, or none at all."""
    seen: set[Key] = set()
    lookback = LOOKBACK
    if promql.seconds(window) < promql.seconds(LOOKBACK):
        info = cq.engine_info(LOOKBACK, narrowed([], map(_key_of, refs)))
        expr = f"count by (namespace, deployment) ({info})"
        seen = {_key(s.labels) for s in prom.instant(expr, at, deadline)}
    else:
        lookback = window
    parts = []
    for ref in refs:
        if _key_of(ref) in seen:
            parts.append(
                f"no data of deployment {ref.name} within the last {window}: it has series "
                f"within the last {lookback} but none in the window (scaled to zero, or the "
                "window is too short)"
            )
        else:
            parts.append(
                f"no series of deployment {ref.name} in Prometheus within the last {lookback} "
                "(llm_engine_info from the inferwatch sidecar): check the namespace and the "
                "pods' inferwatch.io/deployment label"
            )
    return "; ".join(parts)


def compare_deployments(
    prom: Prometheus,
    baseline: Ref,
    candidate: Ref,
    window: str,
    thresholds: Thresholds,
    deadline: Deadline,
    at: float,
) -> Comparison:
    """Read both variants and compare them."""
    base, cand, w = read(prom, baseline, candidate, window, deadline, at)
    return compare(base, cand, thresholds, w)
