"""`Figures` for every deployment in scope, from Prometheus, in one batch of queries.

Each query groups `by (namespace, deployment)` and is narrowed at most to one namespace or one
deployment, so the batch is the same size for one deployment or five hundred. Instant queries
read the whole window (counter increases, bucket increases, the engine's info); range queries
read one value per step (gauges, load, replicas, latency) for the statistics and the relation
the HPA advice fits. Deployments are those with `llm_engine_info` within the window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inferwatch.alerts import conventions, promql
from inferwatch.alerts.promql import Matcher
from inferwatch.slo import queries
from inferwatch.slo.figures import (
    GROUP,
    Figures,
    Headline,
    Point,
    Stat,
    Target,
    merge_buckets,
    parse_le,
)
from inferwatch.slo.prom import Deadline, Prometheus, Query, RangeSeries, Sample

STEPS = 60  # points per range query
MIN_STEP_SECONDS = 30
RESOLUTION = "1m"  # of the start-up subqueries

Key = tuple[str, str]  # namespace, deployment


def step_for(window: str) -> str:
    seconds = max(MIN_STEP_SECONDS, promql.seconds(window) // STEPS)
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def rate_window(step: str) -> str:
    """Per-step rates cover at least the recording rules' 5m, and never skip data."""
    return (
        step
        if promql.seconds(step) > promql.seconds(conventions.RATE_WINDOW)
        else conventions.RATE_WINDOW
    )


def scope(namespace: str | None, deployment: str | None) -> list[Matcher]:
    """The matchers narrowing a batch: nothing, one namespace, or one deployment."""
    out = [promql.Matcher("deployment", "!=", "")]
    if namespace is not None:
        out.append(promql.eq("namespace", promql.validate_namespace(namespace)))
    if deployment is not None:
        out.append(promql.eq("deployment", promql.validate_deployment(deployment)))
    return out


@dataclass(frozen=True)
class Discovered:
    engine: str | None
    model: str | None
    info: dict[str, str]


def _key(labels: Mapping[str, str]) -> Key:
    return labels.get("namespace", ""), labels.get("deployment", "")


def batch(
    matchers: Sequence[Matcher], window: str, step: str, headlines: Iterable[Headline], at: float
) -> dict[str, Query]:
    """Every query of one collection."""
    by = GROUP
    step_s = float(promql.seconds(step))
    # Steps on multiples of the step, as a subquery `[window:step]` evaluated at `at` has
    # them: the evidence's `quantile_over_time(...[6h:3m])` reads the same points.
    end = math.floor(at / step_s) * step_s
    start = end - promql.seconds(window) + step_s
    rate_w = rate_window(step)
    out: dict[str, Query] = {
        "info": Query(queries.engine_info(window, matchers), at),
        "finished": Query(queries.finished(window, by, matchers), at),
        "gpu_total": Query(queries.gpu_total(by, matchers), at),
        "pods": Query(queries.pods_up(by, matchers), end, start, step_s),
        "request_rate": Query(queries.request_rate(rate_w, by, matchers), end, start, step_s),
    }
    for name in queries.COUNTERS:
        out[f"counter/{name}"] = Query(queries.counter(name, window, by, matchers), at)
    for name in queries.HISTOGRAMS:
        out[f"buckets/{name}"] = Query(queries.buckets(name, window, by, matchers), at)
    for name in queries.GAUGES:
        out[f"gauge/{name}"] = Query(queries.gauge(name, by, matchers), end, start, step_s)
    for h in sorted(set(headlines), key=lambda h: (h.histogram, h.quantile)):
        expr = queries.quantile(h.histogram, h.quantile, rate_w, by, matchers)
        out[_latency_key(h)] = Query(expr, end, start, step_s)
    return out


def _latency_key(h: Headline) -> str:
    return f"latency/{h.histogram}/{h.quantile!r}"


def collect(
    prom: Prometheus,
    matchers: Sequence[Matcher],
    window: str,
    headline_for: Mapping[Key, Headline | None] | None,
    default_headlines: Sequence[Headline],
    deadline: Deadline,
    at: float,
) -> dict[Key, Figures]:
    """Figures of every deployment in scope seen within the window.

    `headline_for` names each deployment's headline latency (from its SLOs); deployments not
    in it use the first of `default_headlines` whose histogram they report.
    """
    step = step_for(window)
    wanted = set(default_headlines) | {h for h in (headline_for or {}).values() if h}
    results = prom.batch(batch(matchers, window, step, wanted, at), deadline)
    figures = assemble(results, window, step, prom.url, headline_for or {}, default_headlines, at)
    started = _started(results["pods"], figures)  # type: ignore[arg-type]
    if started:
        # Only pods that appeared within the window had a start-up to measure: two more
        # queries, narrowed to them, whatever the size of the fleet.
        narrowed = [*matchers, promql.one_of("pod", sorted(started))]
        more = prom.batch(
            {
                "seen": Query(
                    queries.first_seen(window, RESOLUTION, GROUP, narrowed, up=False), at
                ),
                "up": Query(queries.first_seen(window, RESOLUTION, GROUP, narrowed, up=True), at),
            },
            deadline,
        )
        _startup(more["seen"], more["up"], figures)  # type: ignore[arg-type]
    return figures


def _started(series: list[RangeSeries], figures: Mapping[Key, Figures]) -> set[str]:
    """Pods whose sidecar first answered after the window's first step."""
    first = min((t for s in series for t, _ in s.points), default=None)
    return {
        s.labels.get("pod", "")
        for s in series
        if s.points and first is not None and s.points[0][0] > first and _key(s.labels) in figures
    }


def assemble(
    results: Mapping[str, list[Sample] | list[RangeSeries]],
    window: str,
    step: str,
    origin: str,
    headline_for: Mapping[Key, Headline | None],
    default_headlines: Sequence[Headline],
    at: float,
) -> dict[Key, Figures]:
    found = _discover(results["info"])  # type: ignore[arg-type]
    figures: dict[Key, Figures] = {}
    for key, d in found.items():
        figures[key] = Figures(
            target=Target(key[0], key[1], d.engine, d.model),
            source="prometheus",
            window=window,
            step=step,
            origin=origin,
            info=d.info,
        )
    for s in results["finished"]:
        fig = figures.get(_key(s.labels))  # type: ignore[union-attr]
        if fig is not None and not math.isnan(s.value):  # type: ignore[union-attr]
            reason = s.labels.get("reason", "")  # type: ignore[union-attr]
            fig.finished[reason] = fig.finished.get(reason, 0.0) + s.value  # type: ignore[union-attr]
    for name in queries.COUNTERS:
        for key, value in _instant(results[f"counter/{name}"]).items():
            if key in figures:
                figures[key].counters[name] = value
    for name in queries.HISTOGRAMS:
        grouped: dict[Key, list[tuple[float, float]]] = defaultdict(list)
        for s in results[f"buckets/{name}"]:
            value = s.value  # type: ignore[union-attr]
            if not math.isnan(value):
                grouped[_key(s.labels)].append((parse_le(s.labels.get("le", "+Inf")), value))
        for key, pairs in grouped.items():
            if key in figures:
                figures[key].buckets[name] = merge_buckets(pairs)
    for s in results["gpu_total"]:
        fig = figures.get(_key(s.labels))
        if fig is not None and not math.isnan(s.value):  # type: ignore[union-attr]
            fig.gpu_model = s.labels.get("gpu_model") or fig.gpu_model
            fig.gpu_total_bytes = max(fig.gpu_total_bytes or 0.0, s.value)  # type: ignore[union-attr]
    for name in queries.GAUGES:
        for key, points in _ranges(results[f"gauge/{name}"]).items():
            stat = Stat.of(v for _, v in points)
            if key in figures and stat is not None:
                figures[key].gauges[name] = stat
    _replicas(results["pods"], figures)  # type: ignore[arg-type]
    rates = _ranges(results["request_rate"])
    waiting = _ranges(results["gauge/requests_waiting"])
    pods = _pods_per_step(results["pods"])  # type: ignore[arg-type]
    latencies = {k: _ranges(v) for k, v in results.items() if k.startswith("latency/")}
    for key, fig in figures.items():
        h = headline_for.get(key) or _first_reported(default_headlines, fig)
        fig.headline = h
        latency = latencies[_latency_key(h)].get(key, []) if h else []
        fig.series = _points(pods.get(key, {}), rates.get(key, []), waiting.get(key, []), latency)
        fig.points = max((s.count for s in fig.gauges.values()), default=0)
    return figures


def _first_reported(headlines: Sequence[Headline], fig: Figures) -> Headline | None:
    return next((h for h in headlines if fig.buckets.get(h.histogram)), None)


def _discover(samples: Iterable[Sample]) -> dict[Key, Discovered]:
    """Per deployment: engine, model and configuration, from the pod stating the most."""
    best: dict[Key, dict[str, str]] = {}
    for s in samples:
        key = _key(s.labels)
        if not all(key):
            continue
        labels = {k: v for k, v in s.labels.items() if k != "__name__"}
        if key not in best or len(labels) > len(best[key]):
            best[key] = labels
    return {
        key: Discovered(labels.get("engine"), labels.get("model"), labels)
        for key, labels in best.items()
    }


def _instant(samples: Iterable[Sample | RangeSeries]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for s in samples:
        if isinstance(s, Sample) and not math.isnan(s.value):
            out[_key(s.labels)] = out.get(_key(s.labels), 0.0) + s.value
    return out


def _ranges(series: Iterable[Sample | RangeSeries]) -> dict[Key, list[tuple[float, float]]]:
    out: dict[Key, list[tuple[float, float]]] = {}
    for s in series:
        if isinstance(s, RangeSeries):
            out.setdefault(_key(s.labels), []).extend(
                (t, v) for t, v in s.points if not math.isnan(v)
            )
    return out


def _pods_per_step(series: Iterable[RangeSeries]) -> dict[Key, dict[float, int]]:
    """Pods whose engine answered, per deployment and step."""
    out: dict[Key, dict[float, int]] = defaultdict(lambda: defaultdict(int))
    for s in series:
        for t, v in s.points:
            if v == 1:
                out[_key(s.labels)][t] += 1
    return out


def _replicas(series: list[RangeSeries], figures: dict[Key, Figures]) -> None:
    per_step = _pods_per_step(series)
    for key, fig in figures.items():
        steps = per_step.get(key)
        if not steps:
            continue
        fig.replicas = Stat.of(float(n) for n in steps.values())
        fig.replicas_now = steps[max(steps)]


def _startup(seen: list[Sample], up: list[Sample], figures: dict[Key, Figures]) -> None:
    """The slowest start-up among the pods that appeared within the window."""
    first = {(_key(s.labels), s.labels.get("pod", "")): s.value for s in seen}
    for s in up:
        pod = (_key(s.labels), s.labels.get("pod", ""))
        began = first.get(pod)
        fig = figures.get(pod[0])
        if fig is None or began is None:
            continue
        took = s.value - began
        if took >= 0:
            fig.startup_seconds = max(fig.startup_seconds or 0.0, took)


def _points(
    pods: Mapping[float, int],
    rates: Sequence[tuple[float, float]],
    waiting: Sequence[tuple[float, float]],
    latency: Sequence[tuple[float, float]],
) -> list[Point]:
    rate_at, waiting_at, latency_at = dict(rates), dict(waiting), dict(latency)
    times = sorted({*pods, *rate_at, *waiting_at, *latency_at})
    return [
        Point(t, pods.get(t), rate_at.get(t), waiting_at.get(t), latency_at.get(t)) for t in times
    ]
