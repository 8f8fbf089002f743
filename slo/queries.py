"""PromQL for the advisor's figures, in one place for the batched queries and the evidence.

Every builder takes the matchers that select the series and the labels to group by. The SLO
service sends each query once for all deployments (`by (namespace, deployment)`, matchers
narrowing to a namespace or one deployment at most), so the number of queries does not grow
with the fleet; a recommendation's evidence shows the same expression with one deployment's
matchers, which returns the same value for that deployment.

Each figure has two forms. `recorded=False` reads the raw series of the normalized schema;
`recorded=True` reads what the generated recording rules record (`alerts/recording.py`): the
per-deployment series of each gauge, which the rules compute with the expressions `gauge()`
and `pods_serving()` build here, the per-model 5m rates, and the advisor's window figures
(increases over its default window, which the rules sum from the 5m rates taken 5 minutes
apart: `increase_from_rates`). The rules' expressions come from here, so both forms agree.

    >>> gauge("kv_cache_usage", ["namespace", "deployment"], [promql.eq("namespace", "llm")])
    'max by (namespace, deployment) (llm_kv_cache_usage_ratio{namespace="llm"})'
    >>> gauge("kv_cache_usage", GROUP, [promql.eq("namespace", "llm")], recorded=True)
    'deployment:llm_kv_cache_usage_ratio:max{namespace="llm"}'
"""

from __future__ import annotations

from collections.abc import Sequence

from inferwatch import schema
from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql
from inferwatch.alerts import queries as q
from inferwatch.alerts.promql import Matcher
from inferwatch.alerts.queries import one_source

Labels = Sequence[str]
Matchers = Sequence[Matcher | str]  # text: matchers from a config (the rules' selector)

GROUP: tuple[str, ...] = c.DEPLOYMENT_LABELS  # what every batched query groups by
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
# What each window increase reads: the raw samples, their recorded per-model 5m rate, and the
# labels kept beside the grouping (`reason` of finished requests; `engine` and `le` of buckets).
_INCREASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "finished": (FINISHED, c.MODEL_REQUESTS_FINISHED_RATE, ("reason",)),
    "prompt_tokens": (COUNTERS["prompt_tokens"], c.MODEL_PROMPT_TOKENS_RATE, ()),
    "generation_tokens": (COUNTERS["generation_tokens"], c.MODEL_GENERATION_TOKENS_RATE, ()),
    "preemptions": (COUNTERS["preemptions"], c.MODEL_PREEMPTIONS_RATE, ()),
    **{
        f"buckets/{key}": (f"{family}_bucket", c.bucket_rate(family), ("engine", "le"))
        for key, family in HISTOGRAMS.items()
    },
}
INCREASES: tuple[str, ...] = tuple(_INCREASES)


def _by(labels: Labels, *extra: str) -> str:
    return q.by([*labels, *extra]) if (labels or extra) else ""


def _agg(op: str, labels: Labels, body: str, *extra: str) -> str:
    by = _by(labels, *extra)
    return f"{op} {by} ({body})" if by else f"{op}({body})"


def _sel(family: str, matchers: Matchers, *more: Matcher) -> str:
    return promql.series(family, *matchers, *more)


def _per_deployment(labels: Labels, window: str | None = None) -> None:
    """Recorded series are per namespace and deployment; window figures are recorded over the
    advisor's default window only."""
    if tuple(labels) != GROUP:
        raise ValueError(f"recorded series are per {', '.join(GROUP)}, not per {labels}")
    if window is not None and window != c.ADVISOR_WINDOW:
        raise ValueError(f"window figures are recorded over {c.ADVISOR_WINDOW}, not {window}")


# ---- over the whole window (instant queries) ----------------------------------------------


def increase_series(key: str) -> str:
    """The recorded series of a window increase, e.g. `deployment:llm_preemptions:increase6h`."""
    return c.window_increase(_INCREASES[key][0])


def increase(
    key: str, window: str, labels: Labels, matchers: Matchers, recorded: bool = False
) -> str:
    """How much a counter grew over the window: `finished` (by reason), a key of COUNTERS, or
    `buckets/<histogram>` (by engine and le). `recorded`: the series the advisor's window
    rules record (`increase_from_rates`)."""
    promql.validate_duration(window)
    family, _rate, extra = _INCREASES[key]
    if recorded:
        _per_deployment(labels, window)
        return _sel(increase_series(key), matchers)
    body = one_source(family, matchers, lambda sel: f"increase({sel}[{window}])")
    return _agg("sum", labels, body, *extra)


def increase_from_rates(key: str, window: str, labels: Labels, matchers: Matchers) -> str:
    """`increase()`'s figure from the recorded per-model 5m rates, as the window rules record
    it: rates 5 minutes apart cover the window once, so their sum times 300 s is the increase,
    whatever the rules' evaluation interval, and reading them costs a fraction of the raw
    samples of every pod."""
    promql.validate_duration(window)
    _family, rate, extra = _INCREASES[key]
    step = c.RATE_WINDOW
    body = f"sum_over_time({_sel(rate, matchers)}[{window}:{step}]) * {promql.seconds(step)}"
    return _agg("sum", labels, body, *extra)


def finished(window: str, labels: Labels, matchers: Matchers, recorded: bool = False) -> str:
    """Requests finished in the window, by reason."""
    return increase("finished", window, labels, matchers, recorded)


def counter(
    name: str, window: str, labels: Labels, matchers: Matchers, recorded: bool = False
) -> str:
    """How much a counter (`prompt_tokens`, `generation_tokens`, `preemptions`) grew."""
    return increase(name, window, labels, matchers, recorded)


def buckets(
    name: str, window: str, labels: Labels, matchers: Matchers, recorded: bool = False
) -> str:
    """A histogram's bucket increases over the window (quantiles are read from them)."""
    return increase(f"buckets/{name}", window, labels, matchers, recorded)


def quantile(
    name: str, q: float, window: str, labels: Labels, matchers: Matchers, recorded: bool = False
) -> str:
    """The q-quantile of a histogram over the window, as Prometheus computes it. Recorded:
    over the 5m rate window (one step of the HPA relation) from the per-model bucket rates,
    over the advisor's window from the recorded bucket increases."""
    promql.validate_duration(window)
    if recorded and window == c.RATE_WINDOW:
        series = _sel(c.bucket_rate(HISTOGRAMS[name]), matchers)
        rates = _agg("sum", labels, series, "engine", "le")
    elif recorded:
        rates = buckets(name, window, labels, matchers, recorded=True)
    else:
        body = one_source(HISTOGRAMS[name] + "_bucket", matchers, lambda s: f"rate({s}[{window}])")
        rates = _agg("sum", labels, body, "engine", "le")
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


# ---- per step; the gauges' mean/p95/max are read from these ------------------------------

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
# Each gauge's per-deployment series, which alerts/recording.py records as `gauge(name, GROUP)`
# (those named `gpu_*`, read from the GPU families, in a group of their own).
RECORDED_GAUGES: dict[str, str] = {
    "kv_cache_usage": c.DEPLOYMENT_KV_CACHE_USAGE,
    "requests_running": c.DEPLOYMENT_REQUESTS_RUNNING,
    "requests_waiting": c.DEPLOYMENT_REQUESTS_WAITING,
    "gpu_memory_free_bytes": c.DEPLOYMENT_GPU_MEMORY_FREE,
    "gpu_utilization": c.DEPLOYMENT_GPU_UTILIZATION,
    "gpu_memory_free_ratio": c.DEPLOYMENT_GPU_MEMORY_FREE_RATIO,
}


def gauge(name: str, labels: Labels, matchers: Matchers, recorded: bool = False) -> str:
    """One value per deployment and step: e.g. the fullest pod's KV-cache usage."""
    if recorded:
        _per_deployment(labels)
        return _sel(RECORDED_GAUGES[name], matchers)
    if name == "gpu_memory_free_ratio":
        used = _sel(schema.family("llm_gpu_memory_used_bytes").name, matchers)
        free = _sel(schema.family("llm_gpu_memory_free_bytes").name, matchers)
        return _agg("min", labels, f"{free} / ({used} + {free})")
    across, family, within = _GAUGES[name]
    body = one_source(schema.family(family).name, matchers)
    if within is not None:
        body = _agg(within, labels, body, "pod")
    return _agg(across, labels, body)


def pods_up(labels: Labels, matchers: Matchers) -> str:
    """Whether each pod's engine answered its sidecar (1) or not (0), per step."""
    series = _sel(UP, matchers, promql.eq("source", ENGINE_SOURCE))
    return _agg("max", labels, series, "pod")


def pods_serving(labels: Labels, matchers: Matchers, recorded: bool = False) -> str:
    """How many pods' engines answer their sidecar, per step."""
    if recorded:
        _per_deployment(labels)
        return _sel(c.DEPLOYMENT_PODS_SERVING, matchers)
    return _agg("count", labels, f"{pods_up(labels, matchers)} == 1")


def request_rate(
    rate_window: str, labels: Labels, matchers: Matchers, recorded: bool = False
) -> str:
    """Finished requests per second, per step (recorded: over the rules' 5m)."""
    if recorded:
        return _agg("sum", labels, _sel(c.MODEL_REQUESTS_FINISHED_RATE, matchers))
    return q.rate_sum(FINISHED, list(labels), rate_window, *matchers)


def step_rate_window(step: str, recorded: bool) -> str:
    """The window of per-step rates: the recording rules' 5m; from raw series, the step when
    longer, so that the steps' rates never skip data."""
    if recorded or promql.seconds(step) <= promql.seconds(c.RATE_WINDOW):
        return c.RATE_WINDOW
    return step


def stat_over_time(stat: str, expr: str, window: str, step: str) -> str:
    """A statistic of a per-step expression over the window, read at the advisor's steps:
    `quantile_over_time(0.95, (expr)[6h:6m])`."""
    promql.validate_duration(window)
    promql.validate_duration(step)
    inner = f"({expr})[{window}:{step}]"
    if stat == "p95":
        return f"quantile_over_time(0.95, {inner})"
    if stat == "p05":
        return f"quantile_over_time(0.05, {inner})"
    function = {"mean": "avg", "max": "max", "min": "min", "count": "count"}[stat]
    return f"{function}_over_time({inner})"


def first_seen(window: str, resolution: str, labels: Labels, matchers: Matchers, up: bool) -> str:
    """Per pod, the timestamp of its sidecar's first sample in the window (`up`: the first
    sample where the engine answered). `timestamp()` gives each sample's own time, so the
    subquery's resolution does not blur it."""
    promql.validate_duration(window)
    promql.validate_duration(resolution)
    series = _sel(UP, matchers, promql.eq("source", ENGINE_SOURCE))
    inner = f"timestamp({series} == 1)" if up else f"timestamp({series})"
    return _agg("min", labels, f"min_over_time({inner}[{window}:{resolution}])", "pod")
