"""The alerts on engines, GPUs and the pipeline's own health, as data built from the config.

Where an alert comes in a warning and a critical tier, both share the alert name, so
Alertmanager can inhibit the warning while the critical one fires (see
deploy/alertmanager/alertmanager.yml). Alerts read the recorded series of `recording`, so they
see what the dashboards show.
"""

from __future__ import annotations

from inferwatch import schema
from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql
from inferwatch.alerts import queries as q
from inferwatch.alerts.config import AlertConfig
from inferwatch.alerts.rules import Alert, Group

# Template fragments, so every description names where in the same words.
POD = "{{ $labels.namespace }}/{{ $labels.pod }}"
MODEL = "model {{ $labels.model }} ({{ $labels.engine }})"
DEPLOYMENT = "{{ $labels.namespace }}/{{ $labels.deployment }}"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.gpu_model }}, {{ $labels.gpu_uuid }}) of pod " + POD


def _pct(ratio: float) -> str:
    return f"{promql.number(ratio * 100)}%"


def engine_alerts(config: AlertConfig) -> Group:
    ttft_p95 = c.quantile(schema.family("llm_time_to_first_token_seconds").name, 0.95)
    tpot_p95 = c.quantile(schema.family("llm_time_per_output_token_seconds").name, 0.95)
    growth = config.queue_growth_window
    return Group(
        c.GROUP_ENGINE_ALERTS,
        (
            Alert(
                c.KV_CACHE_NEARLY_FULL,
                f"{c.POD_KV_CACHE_USAGE} > {promql.number(config.kv_cache_usage_ratio)}",
                c.WARNING,
                "The KV cache of an inference pod has been nearly full for a sustained time.",
                f"The KV cache of pod {POD}, {MODEL}, has been above "
                f"{_pct(config.kv_cache_usage_ratio)} for {config.kv_cache_for}: "
                "{{ $value | humanizePercentage }} in use. New requests wait or preempt "
                "running ones.",
                config.kv_cache_for,
            ),
            Alert(
                c.QUEUE_GROWING,
                f"{c.POD_REQUESTS_WAITING} > {promql.number(config.queue_waiting_requests)}\n"
                f"and\nderiv({c.POD_REQUESTS_WAITING}[{growth}]) > 0",
                c.WARNING,
                "Requests are queueing on an inference pod and the queue keeps growing.",
                f"{{{{ $value }}}} requests are waiting on pod {POD}, {MODEL}, and the queue has "
                f"grown over the last {growth} (more than "
                f"{promql.number(config.queue_waiting_requests)} for {config.queue_for}).",
                config.queue_for,
            ),
            Alert(
                c.PREEMPTIONS_RISING,
                f"{c.POD_PREEMPTIONS_RATE} > {promql.number(config.preemptions_per_second)}",
                c.WARNING,
                "An inference engine keeps preempting requests for lack of KV cache.",
                f'Pod {POD}, {MODEL}, preempts {{{{ printf "%.3g" $value }}}} requests per second '
                f"(more than {promql.number(config.preemptions_per_second)}/s for "
                f"{config.preemptions_for}); preempted requests are recomputed or swapped.",
                config.preemptions_for,
            ),
            Alert(
                c.TTFT_HIGH,
                f"{ttft_p95} > {promql.number(config.ttft_p95_seconds)}",
                c.WARNING,
                "Time to first token (p95) is above its target.",
                f"The p95 time to first token of {MODEL} in {DEPLOYMENT} is "
                f"{{{{ $value | humanizeDuration }}}}, above the "
                f"{promql.number(config.ttft_p95_seconds)}s target for {config.ttft_for}.",
                config.ttft_for,
            ),
            Alert(
                c.TPOT_HIGH,
                f"{tpot_p95} > {promql.number(config.tpot_p95_seconds)}",
                c.WARNING,
                "Time per output token (p95) is above its target.",
                f"The p95 time per output token of {MODEL} in {DEPLOYMENT} is "
                f"{{{{ $value | humanizeDuration }}}}, above the "
                f"{promql.number(config.tpot_p95_seconds)}s target for {config.tpot_for}.",
                config.tpot_for,
            ),
            *(
                Alert(
                    c.ERROR_RATIO_HIGH,
                    f"{c.MODEL_REQUEST_ERROR_RATIO} > {promql.number(threshold)}",
                    severity,
                    "Too many requests to a model finish with an error or an abort.",
                    f"{{{{ $value | humanizePercentage }}}} of the requests to {MODEL} in "
                    f"{DEPLOYMENT} finished as {' or '.join(config.error_reasons)} over "
                    f"{c.RATE_WINDOW} (more than {_pct(threshold)} for {duration}).",
                    duration,
                )
                for severity, threshold, duration in (
                    (c.WARNING, config.error_ratio_warning, config.error_ratio_warning_for),
                    (c.CRITICAL, config.error_ratio_critical, config.error_ratio_critical_for),
                )
            ),
        ),
    )


def gpu_alerts(config: AlertConfig) -> Group:
    xid = c.GPU_XID
    critical_xid = "\nor\n".join(f"{xid} == {code}" for code in config.xid_critical_codes)
    memory = config.gpu_memory_used_ratio
    idle = config.gpu_idle_utilization_ratio
    return Group(
        c.GROUP_GPU_ALERTS,
        (
            Alert(
                c.GPU_XID_ERROR,
                f"{xid} != 0",
                c.WARNING,
                "A GPU reported an XID error.",
                f"{GPU} reported XID {{{{ $value }}}}. Check the node's kernel log for the "
                "error and NVIDIA's XID catalog for what it needs.",
            ),
            Alert(
                c.GPU_XID_ERROR,
                critical_xid,
                c.CRITICAL,
                "A GPU reported an XID error that needs a GPU reset or a node drain.",
                f"{GPU} reported XID {{{{ $value }}}}, which NVIDIA's XID catalog resolves "
                "with a GPU reset or a node drain; its pod's results may be wrong or stalled.",
            ),
            Alert(
                c.GPU_MEMORY_NEARLY_FULL,
                f"{c.GPU_MEMORY_USED_RATIO} > {promql.number(memory)}",
                c.WARNING,
                "A GPU's memory is nearly full.",
                f"{GPU} has used {{{{ $value | humanizePercentage }}}} of its memory for "
                f"{config.gpu_memory_for} (more than {_pct(memory)}): the next allocation "
                "(a larger batch, a CUDA graph, a LoRA adapter) can fail with out-of-memory.",
                config.gpu_memory_for,
            ),
            Alert(
                c.GPU_IDLE_WHILE_QUEUED,
                f"{c.POD_REQUESTS_WAITING} > 0\n"
                f"and on (namespace, pod)\n"
                f"max by (namespace, pod) ({c.POD_GPU_UTILIZATION}) < {promql.number(idle)}",
                c.WARNING,
                "Requests wait while the GPUs of their pod stay idle.",
                f"{{{{ $value }}}} requests are waiting on pod {POD}, {MODEL}, while its GPUs "
                f"have been under {_pct(idle)} busy for {config.gpu_idle_for}: the engine is "
                "stuck or its limits (max sequences, batched tokens) are set too low.",
                config.gpu_idle_for,
            ),
        ),
    )


def health_alerts(config: AlertConfig) -> Group:
    pod = q.by(("namespace", "deployment", "pod"))
    up = promql.series("up", config.target_selector, config.selector)
    upstream = "inferwatch_exporter_upstream_up"
    engine_up = promql.series(upstream, config.selector, promql.eq("source", "engine"))
    dcgm_up = promql.series(upstream, config.selector, promql.eq("source", "dcgm"))
    running = c.MODEL_REQUESTS_RUNNING
    return Group(
        c.GROUP_HEALTH_ALERTS,
        (
            Alert(
                c.TARGET_DOWN,
                f"max {pod} ({up}) == 0",
                c.CRITICAL,
                "Prometheus cannot scrape an inference pod's metrics sidecar.",
                f"Prometheus has failed to scrape the inferwatch sidecar of pod {POD} "
                f"(deployment {{{{ $labels.deployment }}}}) for {config.target_down_for}: "
                "the pod is down, unreachable, or the sidecar is not running.",
                config.target_down_for,
            ),
            Alert(
                c.ENGINE_METRICS_DOWN,
                f"max {pod} ({engine_up}) == 0",
                c.CRITICAL,
                "The inference engine of a pod does not answer its metrics endpoint.",
                f"The inferwatch sidecar of pod {POD} (deployment {{{{ $labels.deployment }}}}) "
                f"has failed to read the engine's /metrics for {config.engine_metrics_down_for}:"
                " the engine is down, hung, or its metrics are disabled.",
                config.engine_metrics_down_for,
            ),
            Alert(
                c.GPU_METRICS_DOWN,
                f"max {pod} ({dcgm_up}) == 0",
                c.WARNING,
                "The sidecar cannot read GPU metrics from dcgm-exporter.",
                f"The inferwatch sidecar of pod {POD} (deployment {{{{ $labels.deployment }}}}) "
                f"has failed to read dcgm-exporter for {config.gpu_metrics_down_for}: GPU "
                "alerts for this pod are blind.",
                config.gpu_metrics_down_for,
            ),
            Alert(
                c.METRICS_ABSENT,
                f"group by (namespace, deployment, engine, model) "
                f"(present_over_time({running}[{config.absent_lookback}]))\n"
                f"unless on (namespace, deployment)\n{running}",
                c.WARNING,
                "An inference deployment that reported metrics has stopped reporting them.",
                f"Deployment {DEPLOYMENT} reported {MODEL} within the last "
                f"{config.absent_lookback} but has reported no engine metrics for "
                f"{config.absent_for}: its pods are gone, not scraped, or the sidecar no longer "
                "recognises the engine.",
                config.absent_for,
            ),
        ),
    )


def groups(config: AlertConfig) -> tuple[Group, ...]:
    return (engine_alerts(config), gpu_alerts(config), health_alerts(config))
