"""`Figures` for every deployment in scope, from Prometheus, in a constant number of queries.

Every query groups `by (namespace, deployment)` and is narrowed at most to one namespace or one
deployment, so a batch is the same size for one deployment or five hundred. Deployments are
those with `llm_engine_info` within the window. The figures come in at most three rounds:

1. **Recorded** (when Prometheus evaluates inferwatch's recording rules and the window is the
   one they record, `conventions.ADVISOR_WINDOW`): one sample per figure and deployment, the
   window statistics and increases `alerts/recording.py` precomputes, read by name. A probe in
   the same round checks that the per-deployment series existed when the window began (rules
   loaded, or backfilled, before it), else the window statistics would cover less than it.
2. **Raw**, for the whole scope when the rules are absent (or off, or the window another one),
   else only for the deployments Prometheus serves without recorded figures (outside the
   rules' selector, say): instant queries over the window (counter and bucket increases) and
   one range query per gauge, whose mean/p95/max the service computes itself.
3. **History**, only for the deployments the HPA rules may scale (`rules_hpa.needs_history`):
   the first samples of their pods (start-up time) and, for those they may scale out, per
   step, replicas, load, queue per pod and the headline latency (the relation the HPA advice
   fits). A healthy fleet skips it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql
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
from inferwatch.slo.rules_hpa import needs_history, needs_series

STEPS = 60  # points per range query
MIN_STEP_SECONDS = 30
RESOLUTION = "1m"  # of the start-up subqueries

Key = tuple[str, str]  # namespace, deployment
Results = Mapping[str, list[Sample] | list[RangeSeries]]


def step_for(window: str) -> str:
    seconds = max(MIN_STEP_SECONDS, promql.seconds(window) // STEPS)
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def scope(namespace: str | None, deployment: str | None) -> list[Matcher]:
    """The matchers narrowing a batch: nothing, one namespace, or one deployment."""
    out = [promql.Matcher("deployment", "!=", "")]
    if namespace is not None:
        out.append(promql.eq("namespace", promql.validate_namespace(namespace)))
    if deployment is not None:
        out.append(promql.eq("deployment", promql.validate_deployment(deployment)))
    return out


def narrowed(matchers: Sequence[Matcher], keys: Iterable[Key]) -> list[Matcher]:
    """`matchers` narrowed to these deployments (answers are then filtered by key: the two
    regexes also match other pairs of their namespaces and names)."""
    keys = sorted(keys)
    return [
        *matchers,
        promql.one_of("namespace", sorted({ns for ns, _ in keys})),
        promql.one_of("deployment", sorted({d for _, d in keys})),
    ]


@dataclass(frozen=True)
class Steps:
    """The window's steps: the multiples of the step within the window, the points a subquery
    `[window:step]` evaluated at `at` reads, so the evidence's `quantile_over_time(...[6h:6m])`
    reads the same points (the window need not be a multiple of the step)."""

    window: str
    step: str
    at: float

    @property
    def seconds(self) -> float:
        return float(promql.seconds(self.step))

    @property
    def end(self) -> float:
        return math.floor(self.at / self.seconds) * self.seconds

    @property
    def start(self) -> float:
        return math.ceil((self.at - promql.seconds(self.window)) / self.seconds) * self.seconds

    def range(self, expr: str) -> Query:
        return Query(expr, self.end, self.start, self.seconds)


def collect(
    prom: Prometheus,
    matchers: Sequence[Matcher],
    window: str,
    headline_for: Mapping[Key, Headline | None] | None,
    default_headlines: Sequence[Headline],
    deadline: Deadline,
    at: float,
    recorded: bool = True,
) -> dict[Key, Figures]:
    """Figures of every deployment in scope seen within the window.

    `headline_for` names each deployment's headline latency (from its SLOs); deployments not
    in it use the first of `default_headlines` whose histogram they report. `recorded=False`
    reads raw series even where the recording rules' series exist.
    """
    steps = Steps(window, step_for(window), at)
    figures: dict[Key, Figures] = {}
    raw_matchers: list[Matcher] | None = list(matchers)
    if recorded and window == c.ADVISOR_WINDOW:
        results = prom.batch(recorded_batch(matchers, steps), deadline)
        if results["history"]:
            figures = assemble_recorded(results, steps, prom.url)
            missing = _discover(results["info"]).keys() - figures.keys()  # type: ignore[arg-type]
            raw_matchers = narrowed(matchers, missing) if missing else None
    if raw_matchers is not None:
        results = prom.batch(raw_batch(raw_matchers, steps), deadline)
        for key, fig in assemble_raw(results, steps, prom.url).items():
            figures.setdefault(key, fig)
    for key, fig in figures.items():
        fig.headline = (headline_for or {}).get(key) or _first_reported(default_headlines, fig)
    wanted = [key for key, fig in figures.items() if needs_history(fig)]
    if wanted:
        _history(prom, narrowed(matchers, wanted), steps, figures, wanted, deadline)
    return figures


def _first_reported(headlines: Sequence[Headline], fig: Figures) -> Headline | None:
    return next((h for h in headlines if fig.buckets.get(h.histogram)), None)


# ---- round 1: the recording rules' window figures -----------------------------------------

# Recorded window statistic -> (gauge name, or "replicas"; statistic)
_WINDOW_STATS: dict[str, tuple[str, str]] = {
    c.window_stat(series, stat): (name, stat)
    for name, series in {**queries.RECORDED_GAUGES, "replicas": c.DEPLOYMENT_PODS_SERVING}.items()
    for stat in c.WINDOW_STATS
}


def recorded_batch(matchers: Sequence[Matcher], steps: Steps) -> dict[str, Query]:
    """One query per recorded series' statistics and per increase: answers of a few thousand
    samples each, which Prometheus encodes in parallel while the service decodes others."""
    at, window = steps.at, steps.window
    replicas = queries.pods_serving(GROUP, matchers, recorded=True)
    out = {
        "info": Query(queries.engine_info(window, matchers), at),
        "gpu_total": Query(queries.gpu_total(GROUP, matchers), at),
        "replicas_now": Query(replicas, steps.end),
        # Recorded per-deployment series of this scope when the window began.
        "history": Query(f"count({replicas} offset {window})", at),
    }
    for series in c.DEPLOYMENT_SERIES:
        names = [c.window_stat(series, stat) for stat in c.WINDOW_STATS]
        out[f"stats/{series}"] = Query(
            promql.selector(promql.one_of("__name__", names), *matchers), at
        )
    for key in queries.INCREASES:
        out[f"increase/{key}"] = Query(queries.increase(key, window, GROUP, matchers, True), at)
    return out


def assemble_recorded(results: Results, steps: Steps, origin: str) -> dict[Key, Figures]:
    """Figures of the deployments with recorded window statistics."""
    stats: dict[Key, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for series in c.DEPLOYMENT_SERIES:
        for s in results[f"stats/{series}"]:
            name, stat = _WINDOW_STATS[s.labels.get("__name__", "")]
            stats[_key(s.labels)][name][stat] = s.value  # type: ignore[union-attr]
    found = _discover(results["info"])  # type: ignore[arg-type]
    figures: dict[Key, Figures] = {}
    for key, per_name in stats.items():
        d = found.get(key)
        if d is None or "replicas" not in per_name:
            continue
        fig = _new(key, d, steps, origin)
        fig.recorded = True
        for name, values in per_name.items():
            stat = _stat(values)
            if stat is None:
                continue
            if name == "replicas":
                fig.replicas = stat
            else:
                fig.gauges[name] = stat
        fig.points = max((s.count for s in fig.gauges.values()), default=0)
        figures[key] = fig
    for key, value in _instant(results["replicas_now"]).items():
        if key in figures:
            figures[key].replicas_now = round(value)
    _increases({k: results[f"increase/{k}"] for k in queries.INCREASES}, figures)  # type: ignore[misc]
    _gpu_total(results["gpu_total"], figures)  # type: ignore[arg-type]
    return figures


def _stat(values: Mapping[str, float]) -> Stat | None:
    if set(values) != set(c.WINDOW_STATS) or any(math.isnan(v) for v in values.values()):
        return None
    return Stat(
        mean=values["mean"],
        p95=values["p95"],
        max=values["max"],
        min=values["min"],
        count=round(values["count"]),
    )


# ---- round 2: raw series --------------------------------------------------------------------


def raw_batch(matchers: Sequence[Matcher], steps: Steps) -> dict[str, Query]:
    at, window, by = steps.at, steps.window, GROUP
    out: dict[str, Query] = {
        "info": Query(queries.engine_info(window, matchers), at),
        "gpu_total": Query(queries.gpu_total(by, matchers), at),
        "replicas": steps.range(queries.pods_serving(by, matchers)),
    }
    for key in queries.INCREASES:
        out[f"increase/{key}"] = Query(queries.increase(key, window, by, matchers), at)
    for name in queries.GAUGES:
        out[f"gauge/{name}"] = steps.range(queries.gauge(name, by, matchers))
    return out


def assemble_raw(results: Results, steps: Steps, origin: str) -> dict[Key, Figures]:
    found = _discover(results["info"])  # type: ignore[arg-type]
    figures = {key: _new(key, d, steps, origin) for key, d in found.items()}
    _increases({k: results[f"increase/{k}"] for k in queries.INCREASES}, figures)  # type: ignore[misc]
    _gpu_total(results["gpu_total"], figures)  # type: ignore[arg-type]
    for name in queries.GAUGES:
        for key, points in _ranges(results[f"gauge/{name}"]).items():
            stat = Stat.of(v for _, v in points)
            if key in figures and stat is not None:
                figures[key].gauges[name] = stat
    for key, points in _ranges(results["replicas"]).items():
        fig = figures.get(key)
        if fig is not None and points:
            fig.replicas = Stat.of(v for _, v in points)
            fig.replicas_now = round(max(points)[1])
    for fig in figures.values():
        fig.points = max((s.count for s in fig.gauges.values()), default=0)
    return figures


# ---- shared by both -----------------------------------------------------------------------


@dataclass(frozen=True)
class Discovered:
    engine: str | None
    model: str | None
    info: dict[str, str]


def _key(labels: Mapping[str, str]) -> Key:
    return labels.get("namespace", ""), labels.get("deployment", "")


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


def _new(key: Key, d: Discovered, steps: Steps, origin: str) -> Figures:
    return Figures(
        target=Target(key[0], key[1], d.engine, d.model),
        source="prometheus",
        window=steps.window,
        step=steps.step,
        origin=origin,
        info=d.info,
    )


def _increases(results: Mapping[str, Iterable[Sample]], figures: Mapping[Key, Figures]) -> None:
    """Requests by reason, counter increases and bucket increases, by `queries.INCREASES`."""
    buckets: dict[tuple[Key, str], list[tuple[float, float]]] = defaultdict(list)
    for key, samples in results.items():
        for s in samples:
            fig = figures.get(_key(s.labels))
            if fig is None or math.isnan(s.value):
                continue
            if key == "finished":
                reason = s.labels.get("reason", "")
                fig.finished[reason] = fig.finished.get(reason, 0.0) + s.value
            elif key.startswith("buckets/"):
                le = parse_le(s.labels.get("le", "+Inf"))
                buckets[(_key(s.labels), key.removeprefix("buckets/"))].append((le, s.value))
            else:
                fig.counters[key] = fig.counters.get(key, 0.0) + s.value
    for (key, name), pairs in buckets.items():
        figures[key].buckets[name] = merge_buckets(pairs)


def _gpu_total(samples: Iterable[Sample], figures: Mapping[Key, Figures]) -> None:
    for s in samples:
        fig = figures.get(_key(s.labels))
        if fig is not None and not math.isnan(s.value):
            fig.gpu_model = s.labels.get("gpu_model") or fig.gpu_model
            fig.gpu_total_bytes = max(fig.gpu_total_bytes or 0.0, s.value)


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


# ---- round 3: history of the deployments the HPA rules may scale ---------------------------


def history_batch(
    steps: Steps,
    startup: Sequence[Matcher],
    series: Mapping[bool, tuple[Sequence[Matcher], Iterable[Headline]]],
) -> dict[str, Query]:
    """The pods' first samples (`startup`: the deployments the HPA rules may scale), and the
    per-step relation series of those they may scale out, read from recorded series or raw
    ones (`series`: recorded? -> the matchers narrowed to them, their headline latencies)."""
    by, at, window = GROUP, steps.at, steps.window
    out = {
        "seen": Query(queries.first_seen(window, RESOLUTION, by, startup, up=False), at),
        "up": Query(queries.first_seen(window, RESOLUTION, by, startup, up=True), at),
    }
    for recorded, (matchers, headlines) in series.items():
        src = "recorded" if recorded else "raw"
        rate_w = queries.step_rate_window(steps.step, recorded)
        out[f"{src}/replicas"] = steps.range(queries.pods_serving(by, matchers, recorded))
        out[f"{src}/request_rate"] = steps.range(
            queries.request_rate(rate_w, by, matchers, recorded)
        )
        out[f"{src}/waiting"] = steps.range(
            queries.gauge("requests_waiting", by, matchers, recorded)
        )
        for h in sorted(set(headlines), key=lambda h: (h.histogram, h.quantile)):
            expr = queries.quantile(h.histogram, h.quantile, rate_w, by, matchers, recorded)
            out[f"{src}/{_latency_key(h)}"] = steps.range(expr)
    return out


def _latency_key(h: Headline) -> str:
    return f"latency/{h.histogram}/{h.quantile!r}"


def _history(
    prom: Prometheus,
    matchers: Sequence[Matcher],
    steps: Steps,
    figures: Mapping[Key, Figures],
    wanted: Sequence[Key],
    deadline: Deadline,
) -> None:
    """Start-up times of the wanted deployments' pods, and the per-step series of those the
    HPA rules may scale out, in one batch."""
    by_source: dict[bool, list[Key]] = defaultdict(list)
    for key in wanted:
        if needs_series(figures[key]):
            by_source[figures[key].recorded].append(key)
    series = {
        recorded: (narrowed(matchers, keys), [figures[k].headline for k in keys])
        for recorded, keys in by_source.items()
    }
    results = prom.batch(
        history_batch(steps, narrowed(matchers, wanted), series),  # type: ignore[arg-type]
        deadline,
    )
    _startup(results["seen"], results["up"], figures, steps)  # type: ignore[arg-type]
    for recorded, keys in by_source.items():
        src = "recorded" if recorded else "raw"
        read = {
            k.removeprefix(f"{src}/"): _ranges(v) for k, v in results.items() if k.startswith(src)
        }
        for key in keys:
            fig = figures[key]
            h = fig.headline
            latency = read[_latency_key(h)].get(key, []) if h else []
            fig.series = _points(
                read["replicas"].get(key, []),
                read["request_rate"].get(key, []),
                read["waiting"].get(key, []),
                latency,
            )


def _startup(
    seen: list[Sample], up: list[Sample], figures: Mapping[Key, Figures], steps: Steps
) -> None:
    """The slowest start-up among the pods whose sidecar first answered within the window
    (after the first step of the start-up subqueries: older pods were there before it)."""
    resolution = promql.seconds(RESOLUTION)
    first_step = math.ceil((steps.at - promql.seconds(steps.window)) / resolution) * resolution
    first = {(_key(s.labels), s.labels.get("pod", "")): s.value for s in seen}
    for s in up:
        pod = (_key(s.labels), s.labels.get("pod", ""))
        began = first.get(pod)
        fig = figures.get(pod[0])
        if fig is None or began is None or began <= first_step:
            continue
        took = s.value - began
        if took >= 0:
            fig.startup_seconds = max(fig.startup_seconds or 0.0, took)


def _points(
    replicas: Sequence[tuple[float, float]],
    rates: Sequence[tuple[float, float]],
    waiting: Sequence[tuple[float, float]],
    latency: Sequence[tuple[float, float]],
) -> list[Point]:
    pods_at, rate_at, waiting_at, latency_at = (
        dict(replicas),
        dict(rates),
        dict(waiting),
        dict(latency),
    )
    times = sorted({*pods_at, *rate_at, *waiting_at, *latency_at})
    return [
        Point(t, pods_at.get(t), rate_at.get(t), waiting_at.get(t), latency_at.get(t))
        for t in times
    ]
