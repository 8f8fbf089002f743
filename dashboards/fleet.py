"""Fleet overview: every deployment and model at once, across engines."""

from __future__ import annotations

from typing import Any

from inferwatch.dashboards import slo
from inferwatch.dashboards import style as S
from inferwatch.dashboards.promql import (
    FINISHED,
    RANGE_WINDOW,
    Scope,
    agg,
    agg_gauge,
    error_ratio,
    gpu_of_engine,
    quantile,
    regex,
    sum_rate,
)

UID = "inferwatch-fleet"
TITLE = "inferwatch / Fleet overview"

# One line per served model of a deployment; quantiles add `engine` themselves.
GROUP = ("namespace", "deployment", "engine", "model")
LEGEND = "{{namespace}}/{{deployment}} {{model}}"
ENGINES = Scope((regex("namespace"), regex("engine")))
GPUS = Scope((regex("namespace"),))

TTFT = "llm_time_to_first_token_seconds"
TPOT = "llm_time_per_output_token_seconds"

VARIABLES = (
    S.Variable(
        "namespace",
        "Namespace",
        "label_values(llm_engine_info, namespace)",
        multi=True,
        include_all=True,
    ),
    S.Variable(
        "engine",
        "Engine",
        'label_values(llm_engine_info{namespace=~"$namespace"}, engine)',
        multi=True,
        include_all=True,
    ),
)


def _gpu_utilization(group: tuple[str, ...]) -> str:
    utilization = gpu_of_engine(f"llm_gpu_utilization_ratio{GPUS.sel()}", ENGINES)
    return agg("avg", group, utilization)


def _glance() -> S.Row:
    return S.Row(
        "Fleet at a glance",
        [
            S.stat(
                "Requests/s",
                "Requests finished per second, whatever their outcome, across the selection.",
                S.Query(sum_rate(FINISHED, (), ENGINES)),
                S.REQUESTS_PER_SECOND,
            ),
            S.stat(
                "Error ratio",
                "Share of finished requests that ended in error or were aborted.",
                S.Query(error_ratio((), ENGINES)),
                S.RATIO,
                thresholds=S.ERRORS,
                decimals=2,
            ),
            S.stat(
                "Generated tokens/s",
                "Output tokens generated per second across the selection.",
                S.Query(sum_rate("llm_generation_tokens_total", (), ENGINES)),
                S.TOKENS_PER_SECOND,
            ),
            S.stat(
                "Requests waiting",
                "Requests queued and not yet scheduled, summed over every pod. A queue that "
                "stays above zero means the fleet is short of capacity.",
                S.Query(agg_gauge("sum", "llm_requests_waiting", (), ENGINES)),
                S.COUNT,
            ),
            S.stat(
                "Peak KV-cache usage",
                "The fullest KV cache of any pod. Near 100 % the engine preempts or queues "
                "requests.",
                S.Query(agg_gauge("max", "llm_kv_cache_usage_ratio", (), ENGINES)),
                S.RATIO,
                thresholds=S.SATURATION,
            ),
            S.stat(
                "GPU utilization",
                "Mean busy fraction of the GPUs of the selected engines' pods (DCGM, joined "
                "to the pod by namespace and pod).",
                S.Query(_gpu_utilization(())),
                S.RATIO,
            ),
        ],
    )


def _traffic() -> S.Row:
    return S.Row(
        "Traffic and errors",
        [
            S.timeseries(
                "Request rate",
                "Requests finished per second, per deployment and model.",
                [S.Query(sum_rate(FINISHED, GROUP, ENGINES), LEGEND)],
                S.REQUESTS_PER_SECOND,
            ),
            S.timeseries(
                "Error ratio",
                "Share of finished requests that ended in error or were aborted, per "
                "deployment and model.",
                [S.Query(error_ratio(GROUP, ENGINES), LEGEND)],
                S.RATIO,
                thresholds=S.ERRORS,
            ),
        ],
    )


def _latency() -> S.Row:
    return S.Row(
        "Latency",
        [
            S.timeseries(
                "Time to first token, p95",
                "95th percentile of the time to first token, per deployment and model. "
                "Buckets are summed within one engine only.",
                [S.Query(quantile(0.95, TTFT, GROUP, ENGINES), LEGEND)],
                S.SECONDS,
            ),
            S.timeseries(
                "Time per output token, p95",
                "95th percentile of the per-request mean time per output token (TPOT), per "
                "deployment and model.",
                [S.Query(quantile(0.95, TPOT, GROUP, ENGINES), LEGEND)],
                S.SECONDS,
            ),
        ],
    )


def _saturation() -> S.Row:
    return S.Row(
        "Saturation",
        [
            S.timeseries(
                "Queue length",
                "Requests waiting to be scheduled, per deployment and model.",
                [S.Query(agg_gauge("sum", "llm_requests_waiting", GROUP, ENGINES), LEGEND)],
                S.COUNT,
            ),
            S.timeseries(
                "KV-cache usage",
                "The fullest KV cache among each deployment's pods.",
                [S.Query(agg_gauge("max", "llm_kv_cache_usage_ratio", GROUP, ENGINES), LEGEND)],
                S.RATIO,
                max_value=1,
                thresholds=S.SATURATION,
            ),
        ],
    )


def _throughput() -> S.Row:
    return S.Row(
        "Throughput and GPUs",
        [
            S.timeseries(
                "Tokens/s",
                "Prompt (prefill) and generated tokens per second, per deployment and model.",
                [
                    S.Query(
                        sum_rate("llm_prompt_tokens_total", GROUP, ENGINES), f"prompt {LEGEND}"
                    ),
                    S.Query(
                        sum_rate("llm_generation_tokens_total", GROUP, ENGINES),
                        f"generated {LEGEND}",
                    ),
                ],
                S.TOKENS_PER_SECOND,
            ),
            S.timeseries(
                "GPU utilization",
                "Mean busy fraction of each deployment's GPUs (DCGM, joined to the serving pod).",
                [S.Query(_gpu_utilization(("namespace", "deployment", "engine", "model")), LEGEND)],
                S.RATIO,
                max_value=1,
            ),
        ],
    )


def _models() -> S.Row:
    window = RANGE_WINDOW

    def instant(expr: str) -> S.Query:
        return S.Query(expr, instant=True, format="table")

    pods = agg("count", GROUP, agg_gauge("max", "llm_engine_info", (*GROUP, "pod"), ENGINES))
    peak_kv = agg(
        "max",
        GROUP,
        f"max_over_time(llm_kv_cache_usage_ratio{ENGINES.sel()}[{window}])",
    )
    columns = [
        S.Column("Pods", instant(pods)),
        S.Column(
            "Requests/s",
            instant(sum_rate(FINISHED, GROUP, ENGINES, window=window)),
            S.REQUESTS_PER_SECOND,
        ),
        S.Column("Error ratio", instant(error_ratio(GROUP, ENGINES, window)), S.RATIO, S.ERRORS),
        S.Column("TTFT p95", instant(quantile(0.95, TTFT, GROUP, ENGINES, window)), S.SECONDS),
        S.Column("TPOT p95", instant(quantile(0.95, TPOT, GROUP, ENGINES, window)), S.SECONDS),
        S.Column(
            "Generated tokens/s",
            instant(sum_rate("llm_generation_tokens_total", GROUP, ENGINES, window=window)),
            S.TOKENS_PER_SECOND,
        ),
        S.Column("Waiting now", instant(agg_gauge("sum", "llm_requests_waiting", GROUP, ENGINES))),
        S.Column("Peak KV-cache usage", instant(peak_kv), S.RATIO, S.SATURATION),
    ]
    return S.Row(
        "Per model",
        [
            S.table(
                "Models",
                "One row per deployment and served model, over the dashboard's time range "
                "(waiting: now).",
                [
                    ("namespace", "Namespace"),
                    ("deployment", "Deployment"),
                    ("engine", "Engine"),
                    ("model", "Model"),
                ],
                columns,
                h=9,
                sort_by="Requests/s",
            )
        ],
    )


def _slo_status() -> S.Row:
    return S.Row("SLO status", [slo.status_table(Scope((regex("namespace"),)))])


def build() -> dict[str, Any]:
    return S.dashboard(
        uid=UID,
        title=TITLE,
        description="Every inference deployment and model at once, whatever the engine: "
        "SLO status, traffic, errors, latency, saturation, throughput and GPUs.",
        variables=VARIABLES,
        rows=[
            _glance(),
            _slo_status(),
            _traffic(),
            _latency(),
            _saturation(),
            _throughput(),
            _models(),
        ],
    )
