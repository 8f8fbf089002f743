"""PromQL for the advisor's figures, in one place for the batched queries and the evidence.

Every builder takes the matchers that select the series and the labels to group by. The SLO
service sends each query once for all deployments (`by (namespace, deployment)`, matchers
narrowing to a namespace or one deployment at most), so the number of queries does not grow
with the fleet; a recommendation's evidence shows the same expression with one deployment's
matchers, which returns the same value for that deployment.

    >>> gauge("kv_cache_usage", ["namespace", "deployment"], [promql.eq("namespace", "llm")])
    'max by (namespace, deployment) (llm_kv_cache_usage_ratio{namespace="llm"})'
"""

from __future__ import annotations

from collections.abc import Sequence

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.alerts import queries as q
from inferwatch.alerts.promql import Matcher

Labels = Sequence[str]
Matchers = Sequence[Matcher]

FINISHED = schema.family("llm_requests_finished_total").name
UP = schema.EXPORTER_FAMILIES[0].name  # inferwatch_exporter_upstream_up
ENGINE_SOURCE = "engine"  # the sidecar's `source` label value for the engine's page
# Every latency histogram the advisor reads, by short name.
HISTOGRAMS: dict[str, str] = {
    "ttft": schema.family("llm_time_to_first_token_seconds").name,
    "tpot": schema.family("llm_time_per_output_token_seconds").name,
    "itl": schema.family("llm_inter_token_latency_seconds").name,
    "e2e": schema.family("llm_request_duration_seconds").name,
    "queue": schema.family("llm_request_queue_duration_seconds").name,
}
COUNTERS: dict[str, str] = {
    "prompt_tokens": schema.family("llm_prompt_tokens_total").name,
    "generation_tokens": schema.family("llm_generation_tokens_total").name,
    "preemptions": schema.family("llm_preemptions_total").name,
}


def _by(labels: Labels, *extra: str) -> str:
    return q.by([*labels, *extra]) if (labels or extra) else ""


def _agg(op: str, labels: Labels, body: str, *extra: str) -> str:
    by = _by(labels, *extra)
    return f"{op} {by} ({body})" if by else f"{op}({body})"


def _sel(family: str, matchers: Matchers, *more: Matcher) -> str:
    return promql.series(family, *matchers, *more)


# ---- over the whole window (instant queries) ----------------------------------------------


def finished(window: str, labels: Labels, matchers: Matchers) -> str:
    """Requests finished in the window, by reason."""
    promql.validate_duration(window)
    return _agg("sum", labels, f"increase({_sel(FINISHED, matchers)}[{window}])", "reason")


def counter(name: str, window: str, labels: Labels, matchers: Matchers) -> str:
    """How much a counter (`prompt_tokens`, `generation_tokens`, `preemptions`) grew."""
    promql.validate_duration(window)
    return _agg("sum", labels, f"increase({_sel(COUNTERS[name], matchers)}[{window}])")


def buckets(name: str, window: str, labels: Labels, matchers: Matchers) -> str:
    """A histogram's bucket increases over the window (quantiles are read from them)."""
    promql.validate_duration(window)
    series = _sel(HISTOGRAMS[name] + "_bucket", matchers)
    return _agg("sum", labels, f"increase({series}[{window}])", "engine", "le")


def quantile(name: str, q: float, window: str, labels: Labels, matchers: Matchers) -> str:
    """The q-quantile of a histogram over the window, as Prometheus computes it."""
    promql.validate_duration(window)
    series = _sel(HISTOGRAMS[name] + "_bucket", matchers)
    rates = _agg("sum", labels, f"rate({series}[{window}])", "engine", "le")
    return f"histogram_quantile({promql.number(q)}, {rates})"


def engine_info(window: str, matchers: Matchers) -> str:
    """Each pod's engine identity and configuration seen within the window."""
    promql.validate_duration(window)
    return f"last_over_time({_sel(schema.family('llm_engine_info').name, matchers)}[{window}])"


def gpu_total(labels: Labels, matchers: Matchers) -> str:
    """Each GPU model's framebuffer size (used + free)."""
    used = _sel(schema.family("llm_gpu_memory_used_bytes").name, matchers)
    free = _sel(schema.family("llm_gpu_memory_free_bytes").name, matchers)
    return _agg("max", labels, f"{used} + {free}", "gpu_model")


# ---- per step (range queries); the gauges' mean/p95/max are read from these -------------

# name -> (aggregation across pods, family, aggregation within a pod or None)
_GAUGES: dict[str, tuple[str, str, str | None]] = {
    # The fullest pod's cache: one full pod preempts, whatever the others do.
    "kv_cache_usage": ("max", "llm_kv_cache_usage_ratio", None),
    # Per pod: a pod's ranks (data-parallel cores) are summed first.
    "requests_running": ("avg", "llm_requests_running", "sum"),
    "requests_waiting": ("avg", "llm_requests_waiting", "sum"),
    "gpu_memory_free_bytes": ("min", "llm_gpu_memory_free_bytes", None),
    "gpu_utilization": ("avg", "llm_gpu_utilization_ratio", None),
}
GAUGES: tuple[str, ...] = (*_GAUGES, "gpu_memory_free_ratio")


def gauge(name: str, labels: Labels, matchers: Matchers) -> str:
    """One value per deployment and step: e.g. the fullest pod's KV-cache usage."""
    if name == "gpu_memory_free_ratio":
        used = _sel(schema.family("llm_gpu_memory_used_bytes").name, matchers)
        free = _sel(schema.family("llm_gpu_memory_free_bytes").name, matchers)
        return _agg("min", labels, f"{free} / ({used} + {free})")
    across, family, within = _GAUGES[name]
    body = _sel(schema.family(family).name, matchers)
    if within is not None:
        body = _agg(within, labels, body, "pod")
    return _agg(across, labels, body)


def pods_up(labels: Labels, matchers: Matchers) -> str:
    """Whether each pod's engine answered its sidecar (1) or not (0), per step."""
    series = _sel(UP, matchers, promql.eq("source", ENGINE_SOURCE))
    return _agg("max", labels, series, "pod")


def request_rate(rate_window: str, labels: Labels, matchers: Matchers) -> str:
    """Finished requests per second, per step."""
    return q.rate_sum(FINISHED, list(labels), rate_window, *matchers)


def stat_over_time(stat: str, expr: str, window: str, step: str) -> str:
    """The evidence form of a gauge statistic: `quantile_over_time(0.95, (expr)[6h:1m])`."""
    promql.validate_duration(window)
    promql.validate_duration(step)
    inner = f"({expr})[{window}:{step}]"
    if stat == "p95":
        return f"quantile_over_time(0.95, {inner})"
    if stat == "p05":
        return f"quantile_over_time(0.05, {inner})"
    function = {"mean": "avg", "max": "max", "min": "min"}[stat]
    return f"{function}_over_time({inner})"


def pods_serving(labels: Labels, matchers: Matchers) -> str:
    """How many pods' engines answer their sidecar."""
    return _agg("count", labels, f"{pods_up(labels, matchers)} == 1")


def first_seen(window: str, resolution: str, labels: Labels, matchers: Matchers, up: bool) -> str:
    """Per pod, the timestamp of its sidecar's first sample in the window (`up`: the first
    sample where the engine answered). `timestamp()` gives each sample's own time, so the
    subquery's resolution does not blur it."""
    promql.validate_duration(window)
    promql.validate_duration(resolution)
    series = _sel(UP, matchers, promql.eq("source", ENGINE_SOURCE))
    inner = f"timestamp({series} == 1)" if up else f"timestamp({series})"
    return _agg("min", labels, f"min_over_time({inner}[{window}:{resolution}])", "pod")
