"""Recording rules: what dashboards, alerts and the SLO service read often, precomputed.

Per model (namespace, deployment, engine, model): request, token and preemption rates, the
error ratio, prefix-cache hit ratio, queue and batch sizes, and for every latency histogram the
bucket and count rates with p50/p90/p95/p99. Per pod and per GPU: what the alerts need (the
fullest KV cache, the queue, preemptions, GPU memory and utilization). Quantiles come from the
recorded bucket rates, which keep `engine`, so buckets of different engines never mix; each
histogram's bucket rates are recorded by several groups, each reading a slice of its `le`
values, so that no group takes more than 50 ms at 1,000 pods (`bucket_groups`). Per
deployment: the gauges the SLO service's advisor reads at every step of its window, with the
advisor's own expressions (`slo/queries.py`), and the advisor's window figures from those and
the per-model rates (statistics over its default window, counter and bucket increases), so the
service reads one sample per figure and deployment.
"""

from __future__ import annotations

from inferwatch import schema
from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql, shards
from inferwatch.alerts import queries as q
from inferwatch.alerts.config import AlertConfig
from inferwatch.alerts.rules import Group, Recording
from inferwatch.slo import queries as advisor

W = c.RATE_WINDOW


def _gauge(level_labels: tuple[str, ...], op: str, family: str, selector: str) -> str:
    return f"{op} {q.by(level_labels)} ({q.one_source(schema.family(family).name, [selector])})"


def model_group(config: AlertConfig) -> Group:
    """Request rates and the error ratio, which reads the rate recorded just before it."""
    labels = c.MODEL_LABELS
    finished = c.MODEL_REQUESTS_FINISHED_RATE
    errors = promql.series(finished, q.reasons_matcher(config.error_reasons))
    by = q.by(labels)
    return Group(
        c.GROUP_MODEL_RULES,
        (
            Recording(
                finished,
                q.rate_sum("llm_requests_finished_total", [*labels, "reason"], W, config.selector),
            ),
            # From the rate just recorded: zero, not absent, while no request has failed yet.
            Recording(
                c.MODEL_REQUEST_ERROR_RATIO,
                f"(\n  sum {by} ({errors})\n  or\n  0 * sum {by} ({finished})\n)\n/\n"
                f"sum {by} ({finished})",
            ),
        ),
    )


def model_load_group(config: AlertConfig) -> Group:
    """Tokens, preemptions, prefix cache, and the running, waiting and KV cache gauges. Apart
    from the request rates: a group reads its families one after another, and all of them
    together took 49 ms at 1,000 pods, at the edge of the 50 ms a group may take."""
    sel = config.selector
    labels = c.MODEL_LABELS
    return Group(
        c.GROUP_MODEL_LOAD_RULES,
        (
            Recording(
                c.MODEL_PROMPT_TOKENS_RATE, q.rate_sum("llm_prompt_tokens_total", labels, W, sel)
            ),
            Recording(
                c.MODEL_GENERATION_TOKENS_RATE,
                q.rate_sum("llm_generation_tokens_total", labels, W, sel),
            ),
            Recording(
                c.MODEL_PREEMPTIONS_RATE, q.rate_sum("llm_preemptions_total", labels, W, sel)
            ),
            Recording(
                c.MODEL_PREFIX_CACHE_HIT_RATIO,
                q.rate_sum("llm_prefix_cache_hits_total", labels, W, sel)
                + "\n/\n"
                + q.rate_sum("llm_prefix_cache_queries_total", labels, W, sel),
            ),
            Recording(c.MODEL_REQUESTS_RUNNING, _gauge(labels, "sum", "llm_requests_running", sel)),
            Recording(c.MODEL_REQUESTS_WAITING, _gauge(labels, "sum", "llm_requests_waiting", sel)),
            Recording(
                c.MODEL_KV_CACHE_USAGE, _gauge(labels, "avg", "llm_kv_cache_usage_ratio", sel)
            ),
        ),
    )


def bucket_groups(family: str, config: AlertConfig) -> tuple[Group, ...]:
    """A histogram's bucket rates per model, one group per `le` shard (alerts/shards.py).

    A group evaluates its rules one after another, and reading one histogram's buckets over
    1,000 pods takes 80-160 ms; a shard reads a slice of them, so each group stays under 50 ms.
    Every shard records the same series name, each its own `le` values (with an empty static
    label, which Prometheus drops, so that `promtool check rules` sees distinct rules). The
    quantiles, in another group, may then lag the bucket rates by up to one evaluation interval,
    and shards evaluated at different offsets within it may disagree slightly while the load
    changes (histogram_quantile tolerates buckets that are not monotonic).
    """
    return tuple(
        Group(
            c.bucket_shard_group(family, k),
            (
                Recording(
                    c.bucket_rate(family),
                    q.rate_sum(
                        family,
                        [*c.MODEL_LABELS, "le"],
                        W,
                        config.selector,
                        *([shard.matcher] if shard.matcher else []),
                        suffix="_bucket",
                    ),
                    {c.bucket_shard_label(k): ""} if shard.matcher else {},
                ),
            ),
        )
        for k, shard in enumerate(shards.shards(family, config.bucket_shards), start=1)
    )


def histogram_group(family: str) -> Group:
    """The count rate and quantiles per model, from the recorded bucket rates."""
    buckets = c.bucket_rate(family)
    rules = [
        # The +Inf bucket counts every observation: the count rate without reading `_count`.
        Recording(
            c.count_rate(family),
            f"sum without (le) ({promql.series(buckets, promql.eq('le', shards.INF))})",
        ),
    ]
    rules += [
        Recording(
            c.quantile(family, quantile),
            f"histogram_quantile({promql.number(quantile)}, {buckets})",
        )
        for quantile in c.QUANTILES
    ]
    return Group(c.histogram_group(family), tuple(rules))


def pod_group(config: AlertConfig) -> Group:
    sel = config.selector
    return Group(
        c.GROUP_POD_RULES,
        (
            Recording(
                c.POD_KV_CACHE_USAGE, _gauge(c.POD_LABELS, "max", "llm_kv_cache_usage_ratio", sel)
            ),
            Recording(
                c.POD_REQUESTS_WAITING, _gauge(c.POD_LABELS, "sum", "llm_requests_waiting", sel)
            ),
            Recording(
                c.POD_PREEMPTIONS_RATE, q.rate_sum("llm_preemptions_total", c.POD_LABELS, W, sel)
            ),
            Recording(
                c.POD_GPU_UTILIZATION,
                # MIG instances report no GPU_UTIL: fall back to the engine-activity ratio.
                _gauge(c.POD_LABELS, "avg", "llm_gpu_utilization_ratio", sel)
                + "\nor\n"
                + _gauge(c.POD_LABELS, "avg", "llm_gpu_engine_active_ratio", sel),
            ),
        ),
    )


def gpu_group(config: AlertConfig) -> Group:
    sel = config.selector
    used = promql.series(schema.family("llm_gpu_memory_used_bytes").name, sel)
    free = promql.series(schema.family("llm_gpu_memory_free_bytes").name, sel)
    gpu = q.by(c.GPU_LABELS)
    return Group(
        c.GROUP_GPU_RULES,
        (
            Recording(
                c.GPU_MEMORY_USED_RATIO,
                f"sum {gpu} ({used})\n/\n(sum {gpu} ({used}) + sum {gpu} ({free}))",
            ),
            Recording(c.GPU_XID, f"max {gpu} ({promql.series('llm_gpu_xid_errors', sel)})"),
        ),
    )


def _deployment_gauges(gpu: bool, config: AlertConfig) -> tuple[Recording, ...]:
    labels, sel = c.DEPLOYMENT_LABELS, [config.selector]
    return tuple(
        Recording(record, advisor.gauge(name, labels, sel))
        for name, record in advisor.RECORDED_GAUGES.items()
        if name.startswith("gpu_") == gpu
    )


def deployment_group(config: AlertConfig) -> Group:
    """The advisor's per-step engine gauges and pods serving, one series per deployment."""
    labels, sel = c.DEPLOYMENT_LABELS, [config.selector]
    return Group(
        c.GROUP_DEPLOYMENT_RULES,
        (
            *_deployment_gauges(False, config),
            Recording(c.DEPLOYMENT_PODS_SERVING, advisor.pods_serving(labels, sel)),
        ),
    )


def deployment_gpu_group(config: AlertConfig) -> Group:
    """The advisor's per-step GPU gauges. Apart from the engine's: all of them in one group
    took 31-51 ms at 1,000 pods, at the edge of the 50 ms a group may take."""
    return Group(c.GROUP_DEPLOYMENT_GPU_RULES, _deployment_gauges(True, config))


def advisor_window_group() -> Group:
    """The advisor's window figures over its default window, from recorded series only: each
    per-deployment series' statistics at the advisor's steps, and counter and bucket increases
    from the per-model 5m rates. The SLO service then reads one sample per figure."""
    window, step = c.ADVISOR_WINDOW, c.ADVISOR_STEP
    stats = [
        Recording(c.window_stat(series, stat), advisor.stat_over_time(stat, series, window, step))
        for series in c.DEPLOYMENT_SERIES
        for stat in c.WINDOW_STATS
    ]
    increases = [
        Recording(
            advisor.increase_series(key),
            advisor.increase_from_rates(key, window, advisor.GROUP, []),
        )
        for key in advisor.INCREASES
    ]
    return Group(c.GROUP_ADVISOR_WINDOW_RULES, (*stats, *increases))


def groups(config: AlertConfig) -> tuple[Group, ...]:
    return (
        model_group(config),
        model_load_group(config),
        *(
            group
            for family in c.LATENCY_HISTOGRAMS
            for group in (*bucket_groups(family, config), histogram_group(family))
        ),
        pod_group(config),
        gpu_group(config),
        deployment_group(config),
        deployment_gpu_group(config),
        advisor_window_group(),
    )
