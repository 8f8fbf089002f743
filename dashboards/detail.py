"""Deployment detail: one deployment of one engine, pod by pod."""

from __future__ import annotations

from typing import Any

from inferwatch import schema
from inferwatch.dashboards import style as S
from inferwatch.dashboards.promql import (
    FINISHED,
    Scope,
    agg,
    agg_gauge,
    bucket_increase,
    eq,
    quantile,
    ratio,
    regex,
    sum_rate,
)

UID = "inferwatch-deployment"
TITLE = "inferwatch / Deployment detail"

# One engine at a time (`engine="$engine"`): its bucket layout is the only one in play.
SCOPE = Scope((eq("namespace"), eq("deployment"), eq("engine"), regex("model"), regex("pod")))
QUANTILES = (0.5, 0.9, 0.99)

_INFO = "llm_engine_info"
VARIABLES = (
    S.Variable("namespace", "Namespace", f"label_values({_INFO}, namespace)"),
    S.Variable(
        "deployment",
        "Deployment",
        f'label_values({_INFO}{{namespace="$namespace"}}, deployment)',
    ),
    S.Variable(
        "engine",
        "Engine",
        f'label_values({_INFO}{{namespace="$namespace", deployment="$deployment"}}, engine)',
    ),
    S.Variable(
        "model",
        "Model",
        f'label_values({_INFO}{{namespace="$namespace", deployment="$deployment", '
        f'engine="$engine"}}, model)',
        multi=True,
        include_all=True,
    ),
    S.Variable(
        "pod",
        "Pod",
        f'label_values({_INFO}{{namespace="$namespace", deployment="$deployment", '
        f'engine="$engine"}}, pod)',
        multi=True,
        include_all=True,
    ),
)

# The latency histograms, in the order the rows show them (every one of `schema.HISTOGRAMS`).
LATENCY_TITLES = {
    "llm_time_to_first_token_seconds": "Time to first token",
    "llm_inter_token_latency_seconds": "Inter-token latency",
    "llm_time_per_output_token_seconds": "Time per output token",
    "llm_request_duration_seconds": "End-to-end latency",
    "llm_request_queue_duration_seconds": "Queue time",
}


def _load() -> S.Row:
    info_labels = ("pod", "model", *schema.ENGINE_INFO_LABELS)
    return S.Row(
        "Load",
        [
            S.timeseries(
                "Requests running and waiting",
                "Requests in the running batch and requests queued for it, per pod. Waiting "
                "requests while the batch is not full point at the KV cache, not at compute.",
                [
                    S.Query(
                        agg_gauge("sum", "llm_requests_running", ("pod",), SCOPE), "running {{pod}}"
                    ),
                    S.Query(
                        agg_gauge("sum", "llm_requests_waiting", ("pod",), SCOPE), "waiting {{pod}}"
                    ),
                ],
                S.COUNT,
            ),
            S.timeseries(
                "KV-cache usage",
                "Fraction of the KV cache in use, per pod (and engine rank under data "
                "parallelism). Near 100 % the engine preempts running requests or holds new "
                "ones in the queue.",
                [
                    S.Query(
                        agg_gauge("max", "llm_kv_cache_usage_ratio", ("pod", "rank"), SCOPE),
                        "{{pod}} {{rank}}",
                    )
                ],
                S.RATIO,
                max_value=1,
                thresholds=S.SATURATION,
            ),
            S.table(
                "Engine configuration",
                "What each pod's engine states of its version and configuration "
                "(`llm_engine_info`); empty cells are settings the engine does not state.",
                [(label, label.replace("_", " ")) for label in info_labels],
                [
                    S.Column(
                        "ranks",
                        S.Query(
                            agg("count", info_labels, f"{_INFO}{SCOPE.sel()}"),
                            instant=True,
                            format="table",
                        ),
                    )
                ],
                h=5,
            ),
        ],
    )


def _latency_rows() -> list[S.Row]:
    panels = []
    for fam in schema.HISTOGRAMS:
        if fam.name not in LATENCY_TITLES:
            raise KeyError(f"{fam.name} needs a title in detail.LATENCY_TITLES")
        title = LATENCY_TITLES[fam.name]
        panels.append(
            S.timeseries(
                f"{title}: p50, p90, p99",
                f"{fam.help} Percentiles over the rate window, from the engine's own buckets "
                "(a percentile is never finer than the bucket it falls in).",
                [
                    S.Query(quantile(q, fam.name, (), SCOPE), f"p{round(q * 100)}")
                    for q in QUANTILES
                ],
                S.SECONDS,
                w=14,
            )
        )
        panels.append(
            S.heatmap(
                f"{title}: distribution",
                f"{fam.help} Requests per bucket and interval.",
                S.Query(bucket_increase(fam.name, SCOPE), "{{le}}", format="heatmap"),
                S.SECONDS,
                w=10,
            )
        )
    return [S.Row("Latency", panels)]


def _throughput() -> S.Row:
    return S.Row(
        "Throughput and outcomes",
        [
            S.timeseries(
                "Tokens/s",
                "Prompt (prefill) and generated tokens per second, per pod.",
                [
                    S.Query(sum_rate("llm_prompt_tokens_total", ("pod",), SCOPE), "prompt {{pod}}"),
                    S.Query(
                        sum_rate("llm_generation_tokens_total", ("pod",), SCOPE),
                        "generated {{pod}}",
                    ),
                ],
                S.TOKENS_PER_SECOND,
            ),
            S.timeseries(
                "Finished requests by reason",
                "Requests finished per second by reason: `stop` (end of sequence or stop "
                "string), `length` (token limit), `abort` (client went away or was dropped), "
                "`error`.",
                [S.Query(sum_rate(FINISHED, ("reason",), SCOPE), "{{reason}}")],
                S.REQUESTS_PER_SECOND,
                stack=True,
            ),
        ],
    )


def _cache() -> S.Row:
    hits = sum_rate("llm_prefix_cache_hits_total", ("pod",), SCOPE)
    queries = sum_rate("llm_prefix_cache_queries_total", ("pod",), SCOPE)
    return S.Row(
        "KV cache and scheduling",
        [
            S.timeseries(
                "Preemptions",
                "Requests preempted per second for lack of KV-cache space, per pod. Sustained "
                "preemptions waste compute: lower the maximum number of sequences, give the "
                "cache more GPU memory, or add replicas.",
                [S.Query(sum_rate("llm_preemptions_total", ("pod",), SCOPE), "{{pod}}")],
                S.PER_SECOND,
            ),
            S.timeseries(
                "Prefix-cache hit ratio",
                "Share of prompt tokens looked up in the prefix cache that were found there, "
                "per pod.",
                [S.Query(ratio(hits, queries), "{{pod}}")],
                S.RATIO,
                max_value=1,
            ),
        ],
    )


def build() -> dict[str, Any]:
    return S.dashboard(
        uid=UID,
        title=TITLE,
        description="One deployment of one engine, pod by pod: load, KV cache, latency "
        "percentiles and distributions, throughput, outcomes, preemptions and prefix caching.",
        variables=VARIABLES,
        rows=[_load(), *_latency_rows(), _throughput(), _cache()],
    )
