"""Every name the generated rules create: recorded series, labels, groups, alerts.

Dashboards and the SLO service read these names from here, never re-type them. Recorded series
follow Prometheus' `level:metric:operations` convention: `level` is the aggregation (the labels
kept), `metric` the schema family (counters without `_total` once rated), `operations` what was
applied, newest last (`model:llm_time_to_first_token_seconds:p95_rate5m`). This module imports
nothing but the schema, so reading a name costs nothing.
"""

from __future__ import annotations

from inferwatch import schema

# ---- labels ---------------------------------------------------------------------------------

SEVERITY = "severity"
CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES: tuple[str, ...] = (CRITICAL, WARNING, INFO)
SLO = "slo"  # the SLO name, on every SLO series and alert
RUNBOOK_URL = "runbook_url"

# ---- aggregation levels: the labels each level keeps --------------------------------------
# Quantiles only ever aggregate within one engine (bucket layouts differ), so every level that
# aggregates engine series keeps `engine`.

LEVELS: dict[str, tuple[str, ...]] = {
    "model": ("namespace", "deployment", "engine", "model"),
    "pod": ("namespace", "deployment", "pod", "engine", "model"),
    "gpu": ("namespace", "deployment", "pod", "gpu", "gpu_uuid", "gpu_model", "gpu_instance"),
    "deployment": ("namespace", "deployment"),
    "slo": ("slo", "namespace", "deployment"),
}
MODEL_LABELS = LEVELS["model"]
POD_LABELS = LEVELS["pod"]
GPU_LABELS = LEVELS["gpu"]
DEPLOYMENT_LABELS = LEVELS["deployment"]

RATE_WINDOW = "5m"  # the window of every recorded per-second rate
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)


def record(level: str, metric: str, operations: str) -> str:
    """A recorded series name, `level:metric:operations`."""
    if level not in LEVELS:
        raise ValueError(f"unknown aggregation level {level!r}; known: {', '.join(LEVELS)}")
    return f"{level}:{metric}:{operations}"


def _rated(family: str) -> str:
    """A counter's name once rated: without `_total` (Prometheus naming practice)."""
    return schema.family(family).name.removesuffix("_total")


def quantile_label(q: float) -> str:
    """`p95` for 0.95, `p99` for 0.99, `p999` for 0.999."""
    digits = f"{q:.6f}".rstrip("0").split(".")[1]
    return "p" + (digits + "0" if len(digits) == 1 else digits)


# ---- recorded series (alerts/recording.py makes them) --------------------------------------

# Rates per model (kept labels: MODEL_LABELS; the finished-request rate also keeps `reason`).
MODEL_REQUESTS_FINISHED_RATE = record(
    "model", _rated("llm_requests_finished_total"), f"rate{RATE_WINDOW}"
)
MODEL_REQUEST_ERROR_RATIO = record("model", "llm_request_errors", f"ratio_rate{RATE_WINDOW}")
MODEL_PROMPT_TOKENS_RATE = record("model", _rated("llm_prompt_tokens_total"), f"rate{RATE_WINDOW}")
MODEL_GENERATION_TOKENS_RATE = record(
    "model", _rated("llm_generation_tokens_total"), f"rate{RATE_WINDOW}"
)
MODEL_PREEMPTIONS_RATE = record("model", _rated("llm_preemptions_total"), f"rate{RATE_WINDOW}")
MODEL_PREFIX_CACHE_HIT_RATIO = record(
    "model", _rated("llm_prefix_cache_hits_total"), f"ratio_rate{RATE_WINDOW}"
)
# Gauges per model: requests summed over pods and ranks, KV cache averaged over pods.
MODEL_REQUESTS_RUNNING = record("model", schema.family("llm_requests_running").name, "sum")
MODEL_REQUESTS_WAITING = record("model", schema.family("llm_requests_waiting").name, "sum")
MODEL_KV_CACHE_USAGE = record("model", schema.family("llm_kv_cache_usage_ratio").name, "avg")
# Per pod: the fullest rank's KV cache (one full rank stalls the pod), queue over ranks.
POD_KV_CACHE_USAGE = record("pod", schema.family("llm_kv_cache_usage_ratio").name, "max")
POD_REQUESTS_WAITING = record("pod", schema.family("llm_requests_waiting").name, "sum")
POD_PREEMPTIONS_RATE = record("pod", _rated("llm_preemptions_total"), f"rate{RATE_WINDOW}")
# Per GPU: memory used / (used + free); per pod: mean GPU busy fraction.
GPU_MEMORY_USED_RATIO = record("gpu", "llm_gpu_memory_used", "ratio")
GPU_XID = record("gpu", schema.family("llm_gpu_xid_errors").name, "max")  # the last XID code
POD_GPU_UTILIZATION = record("pod", schema.family("llm_gpu_utilization_ratio").name, "avg")
# Per deployment, one series each: the gauges the SLO service's advisor reads step by step
# (their statistics over its window, the queue in its HPA fit), aggregated as it aggregates the
# raw series (slo/queries.py): the fullest pod's KV cache, requests per pod (ranks summed),
# the GPU with the least memory free, mean GPU busy fraction, and the pods whose engine answers.
DEPLOYMENT_KV_CACHE_USAGE = record(
    "deployment", schema.family("llm_kv_cache_usage_ratio").name, "max"
)
DEPLOYMENT_REQUESTS_RUNNING = record(
    "deployment", schema.family("llm_requests_running").name, "avg_per_pod"
)
DEPLOYMENT_REQUESTS_WAITING = record(
    "deployment", schema.family("llm_requests_waiting").name, "avg_per_pod"
)
DEPLOYMENT_GPU_MEMORY_FREE = record(
    "deployment", schema.family("llm_gpu_memory_free_bytes").name, "min"
)
DEPLOYMENT_GPU_MEMORY_FREE_RATIO = record("deployment", "llm_gpu_memory_free", "min_ratio")
DEPLOYMENT_GPU_UTILIZATION = record(
    "deployment", schema.family("llm_gpu_utilization_ratio").name, "avg"
)
DEPLOYMENT_PODS_SERVING = record("deployment", schema.EXPORTER_FAMILIES[0].name, "count_pods")
DEPLOYMENT_SERIES: tuple[str, ...] = (
    DEPLOYMENT_KV_CACHE_USAGE,
    DEPLOYMENT_REQUESTS_RUNNING,
    DEPLOYMENT_REQUESTS_WAITING,
    DEPLOYMENT_GPU_MEMORY_FREE,
    DEPLOYMENT_GPU_MEMORY_FREE_RATIO,
    DEPLOYMENT_GPU_UTILIZATION,
    DEPLOYMENT_PODS_SERVING,
)

# The advisor's window figures, precomputed over its default window at its step (the service's
# `window` setting; slo/from_prometheus.step_for gives this step for this window): statistics
# of each per-deployment series, and counter and bucket increases per deployment.
ADVISOR_WINDOW = "6h"
ADVISOR_STEP = "6m"
WINDOW_STATS: tuple[str, ...] = ("mean", "p95", "max", "min", "count")


def window_stat(series: str, stat: str) -> str:
    """A statistic of a per-deployment series over the advisor's window, newest operation
    first: `deployment:llm_kv_cache_usage_ratio:p95_6h_max`."""
    if series not in DEPLOYMENT_SERIES or stat not in WINDOW_STATS:
        raise ValueError(f"no recorded {stat} of {series!r}")
    level, metric, operations = series.split(":")
    return record(level, metric, f"{stat}_{ADVISOR_WINDOW}_{operations}")


def window_increase(family: str) -> str:
    """How much a counter, or each bucket of a histogram, grew per deployment over the advisor's
    window: `deployment:llm_preemptions:increase6h`, `deployment:<histogram>_bucket:increase6h`.
    """
    fam = schema.family(family.removesuffix("_bucket"))
    metric = f"{fam.name}_bucket" if family.endswith("_bucket") else _rated(fam.name)
    return record("deployment", metric, f"increase{ADVISOR_WINDOW}")


# Histograms with a recorded bucket rate and quantiles per model.
LATENCY_HISTOGRAMS: tuple[str, ...] = tuple(f.name for f in schema.HISTOGRAMS)


def bucket_rate(family: str) -> str:
    """Per-model bucket rates of a histogram (keeps `le`): feed heatmaps and any quantile."""
    return record("model", f"{schema.family(family).name}_bucket", f"rate{RATE_WINDOW}")


def count_rate(family: str) -> str:
    """Per-model observation rate of a histogram."""
    return record("model", f"{schema.family(family).name}_count", f"rate{RATE_WINDOW}")


def quantile(family: str, q: float) -> str:
    """Per-model quantile, e.g. `model:llm_time_to_first_token_seconds:p95_rate5m`."""
    if q not in QUANTILES:
        raise ValueError(f"quantile {q} is not recorded; recorded: {QUANTILES}")
    return record("model", schema.family(family).name, f"{quantile_label(q)}_rate{RATE_WINDOW}")


# ---- SLO series (alerts/slo_rules.py makes them; every one carries `slo`) ------------------


SLO_LABELS = LEVELS["slo"]
# The SLI's events per second over the rate window, all and bad: every longer window's error
# ratio is summed from these (cheap at any fleet size, and backfillable with promtool).
SLO_REQUESTS_RATE = record("slo", "sli_requests", f"rate{RATE_WINDOW}")
SLO_ERRORS_RATE = record("slo", "sli_errors", f"rate{RATE_WINDOW}")


def slo_error_ratio(window: str) -> str:
    """The SLI's error ratio over a window, e.g. `slo:sli_error:ratio_rate1h`."""
    return record("slo", "sli_error", f"ratio_rate{window}")


def slo_burn_rate(window: str) -> str:
    """Error ratio over a window divided by the error budget, e.g. `slo:burn_rate:ratio_rate1h`."""
    return record("slo", "burn_rate", f"ratio_rate{window}")


SLO_OBJECTIVE = record("slo", "objective", "ratio")  # the objective, e.g. 0.999
SLO_PERIOD_DAYS = record("slo", "period", "days")  # 28 or 30
# 1 - the share of the error budget spent over the period so far (negative once overspent).
SLO_ERROR_BUDGET_REMAINING = record("slo", "error_budget_remaining", "ratio")

# ---- groups ----------------------------------------------------------------------------------

GROUP_MODEL_RULES = "inferwatch.model.rules"  # request rates and the error ratio
GROUP_MODEL_LOAD_RULES = "inferwatch.model.load.rules"  # tokens, preemptions, cache, queue
GROUP_POD_RULES = "inferwatch.pod.rules"
GROUP_GPU_RULES = "inferwatch.gpu.rules"
GROUP_DEPLOYMENT_RULES = "inferwatch.deployment.rules"  # engine gauges, pods serving
GROUP_DEPLOYMENT_GPU_RULES = "inferwatch.deployment.gpu.rules"
GROUP_ADVISOR_WINDOW_RULES = "inferwatch.deployment.window.rules"
GROUP_ENGINE_ALERTS = "inferwatch.engine.alerts"
GROUP_GPU_ALERTS = "inferwatch.gpu.alerts"
GROUP_HEALTH_ALERTS = "inferwatch.health.alerts"


def histogram_group(family: str) -> str:
    """A histogram's count rate and quantiles, from its recorded bucket rates."""
    return f"inferwatch.model.{schema.family(family).name}.rules"


def bucket_shard_group(family: str, shard: int) -> str:
    """The group recording shard `shard` (1, 2, ...) of a histogram's bucket rates: reading the
    buckets is the costliest rule at fleet scale, so each group reads a slice of them."""
    if shard < 1:
        raise ValueError(f"bucket shards are numbered from 1, not {shard}")
    return f"inferwatch.model.{schema.family(family).name}.buckets.{shard}.rules"


def bucket_shard_label(shard: int) -> str:
    """The static label, always empty, that tells shard `shard`'s rule from the others'.

    The shards record one series name with the same labels, each its own `le` values, and
    `promtool check rules` reports rules with the same name and static labels as duplicates.
    A label with an empty value is no label at all (Prometheus' data model: setting it removes
    it), so the recorded series are unchanged and the lint sees distinct rules.
    """
    if shard < 1:
        raise ValueError(f"bucket shards are numbered from 1, not {shard}")
    return f"le_shard_{shard}"


def slo_group(slo: str) -> str:
    return f"inferwatch.slo.{slo}"


# ---- alerts ----------------------------------------------------------------------------------

KV_CACHE_NEARLY_FULL = "LLMKVCacheNearlyFull"
QUEUE_GROWING = "LLMRequestQueueGrowing"
PREEMPTIONS_RISING = "LLMPreemptionsRising"
TTFT_HIGH = "LLMTimeToFirstTokenHigh"
TPOT_HIGH = "LLMTimePerOutputTokenHigh"
ERROR_RATIO_HIGH = "LLMRequestErrorRatioHigh"
TARGET_DOWN = "LLMExporterTargetDown"
ENGINE_METRICS_DOWN = "LLMEngineMetricsDown"
GPU_METRICS_DOWN = "LLMGPUMetricsDown"
GPU_XID_ERROR = "LLMGPUXidError"
GPU_MEMORY_NEARLY_FULL = "LLMGPUMemoryNearlyFull"
GPU_IDLE_WHILE_QUEUED = "LLMGPUIdleWhileRequestsQueue"
METRICS_ABSENT = "LLMMetricsAbsent"
SLO_BUDGET_BURN = "LLMSLOErrorBudgetBurn"
