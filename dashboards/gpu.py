"""GPUs: dcgm-exporter's figures for the serving pods' own GPUs, next to the engine's load.

The sidecar exports only its pod's GPUs, so GPU and engine series share `namespace`, `pod` and
`deployment` from the same scrape target: the join to the pod needs no relabelling, and the
engine panels beside each GPU panel select exactly the same pods.
"""

from __future__ import annotations

from typing import Any

from inferwatch.dashboards import style as S
from inferwatch.dashboards.promql import (
    Scope,
    agg_gauge,
    eq,
    gpu_of_engine,
    ratio,
    regex,
    sum_rate,
)

UID = "inferwatch-gpu"
TITLE = "inferwatch / GPUs"

SCOPE = Scope((eq("namespace"), eq("deployment"), regex("pod")))
BY_GPU = ("pod", "gpu", "gpu_instance")
GPU_LEGEND = "{{pod}} GPU {{gpu}} {{gpu_instance}}"
# Not shown: SM activity (`llm_gpu_sm_active_ratio`) is not among dcgm-exporter's default
# counters, so a panel of it would sit empty on most clusters (see docs/dashboards.md).

# Variables come from GPU series, so only deployments that have GPUs are offered.
_MEMORY = "llm_gpu_memory_used_bytes"
VARIABLES = (
    S.Variable("namespace", "Namespace", f"label_values({_MEMORY}, namespace)"),
    S.Variable(
        "deployment",
        "Deployment",
        f'label_values({_MEMORY}{{namespace="$namespace"}}, deployment)',
    ),
    S.Variable(
        "pod",
        "Pod",
        f'label_values({_MEMORY}{{namespace="$namespace", deployment="$deployment"}}, pod)',
        multi=True,
        include_all=True,
    ),
)


def _per_gpu(name: str) -> str:
    return agg_gauge("max", name, BY_GPU, SCOPE)


def _inventory() -> S.Row:
    def column(header: str, name: str, unit: str, thresholds: Any = None) -> S.Column:
        joined = gpu_of_engine(f"{name}{SCOPE.sel()}", SCOPE)
        return S.Column(header, S.Query(joined, instant=True, format="table"), unit, thresholds)

    return S.Row(
        "GPUs of the selected pods",
        [
            S.table(
                "GPUs and what they serve",
                "Each GPU of the selected pods with the engine and model its pod serves "
                "(GPU series joined to `llm_engine_info` on namespace and pod).",
                [
                    ("pod", "Pod"),
                    ("gpu", "GPU"),
                    ("gpu_instance", "MIG instance"),
                    ("gpu_model", "GPU model"),
                    ("gpu_uuid", "UUID"),
                    ("engine", "Engine"),
                    ("model", "Model"),
                ],
                [
                    column("Utilization", "llm_gpu_utilization_ratio", S.RATIO),
                    column("Memory used", "llm_gpu_memory_used_bytes", S.BYTES),
                    column("Memory free", "llm_gpu_memory_free_bytes", S.BYTES),
                    column("Power", "llm_gpu_power_watts", S.WATTS),
                    column("Temperature", "llm_gpu_temperature_celsius", S.CELSIUS),
                    column("Last XID", "llm_gpu_xid_errors", S.NONE, S.ANY_IS_BAD),
                ],
                h=6,
            )
        ],
    )


def _side_by_side() -> S.Row:
    return S.Row(
        "GPU activity beside the engine's load",
        [
            S.timeseries(
                "GPU utilization",
                "Fraction of time the GPU was busy (DCGM `GPU_UTIL`). A GPU can be 100 % "
                "busy while its compute units idle; see engine activity below.",
                [S.Query(_per_gpu("llm_gpu_utilization_ratio"), GPU_LEGEND)],
                S.RATIO,
                max_value=1,
            ),
            S.timeseries(
                "KV-cache usage",
                "KV-cache usage of the same pods.",
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
            S.timeseries(
                "Graphics engine activity",
                "Fraction of time the graphics/compute engine was active "
                "(DCGM `PROF_GR_ENGINE_ACTIVE`; the utilization figure that works on MIG).",
                [S.Query(_per_gpu("llm_gpu_engine_active_ratio"), GPU_LEGEND)],
                S.RATIO,
                max_value=1,
            ),
            S.timeseries(
                "Queue length",
                "Requests waiting to be scheduled in the same pods.",
                [S.Query(agg_gauge("sum", "llm_requests_waiting", ("pod",), SCOPE), "{{pod}}")],
                S.COUNT,
            ),
            S.timeseries(
                "Tensor-core and memory-bandwidth activity",
                "DCGM profiling fields: fraction of time the tensor-core pipes were active and "
                "fraction of memory bandwidth in use. High tensor activity with low DRAM "
                "activity is compute-bound work (prefill); the reverse is memory-bound "
                "(decode).",
                [
                    S.Query(_per_gpu("llm_gpu_tensor_active_ratio"), f"tensor {GPU_LEGEND}"),
                    S.Query(_per_gpu("llm_gpu_dram_active_ratio"), f"DRAM {GPU_LEGEND}"),
                ],
                S.RATIO,
                max_value=1,
            ),
            S.timeseries(
                "Requests running",
                "Requests in the running batch of the same pods.",
                [S.Query(agg_gauge("sum", "llm_requests_running", ("pod",), SCOPE), "{{pod}}")],
                S.COUNT,
            ),
        ],
    )


def _memory_and_energy() -> S.Row:
    joules = sum_rate("llm_gpu_energy_joules_total", ("namespace", "pod"), SCOPE)
    tokens = sum_rate("llm_generation_tokens_total", ("namespace", "pod"), SCOPE)
    return S.Row(
        "Memory and energy",
        [
            S.timeseries(
                "GPU memory used and free",
                "Framebuffer memory per GPU. Engines reserve most of it for the KV cache at "
                "start, so `used` stays flat under load: watch KV-cache usage for headroom.",
                [
                    S.Query(_per_gpu("llm_gpu_memory_used_bytes"), f"used {GPU_LEGEND}"),
                    S.Query(_per_gpu("llm_gpu_memory_free_bytes"), f"free {GPU_LEGEND}"),
                ],
                S.BYTES,
            ),
            S.timeseries(
                "Energy per generated token",
                "GPU energy per output token, per pod: joules drawn by the pod's GPUs divided "
                "by the tokens its engine generated.",
                [S.Query(ratio(joules, tokens), "{{pod}}")],
                S.JOULES_PER_TOKEN,
            ),
        ],
    )


def _health() -> S.Row:
    return S.Row(
        "Power and health",
        [
            S.timeseries(
                "Power",
                "Power draw per GPU.",
                [S.Query(_per_gpu("llm_gpu_power_watts"), GPU_LEGEND)],
                S.WATTS,
                w=8,
            ),
            S.timeseries(
                "Temperature",
                "GPU temperature.",
                [S.Query(_per_gpu("llm_gpu_temperature_celsius"), GPU_LEGEND)],
                S.CELSIUS,
                w=8,
                min_value=None,
            ),
            S.timeseries(
                "XID errors",
                "Last XID error code each GPU reported (0: none). Any other value is a driver "
                "or hardware event; NVIDIA's XID catalogue says what each code means.",
                [S.Query(_per_gpu("llm_gpu_xid_errors"), GPU_LEGEND)],
                S.NONE,
                w=8,
                thresholds=S.ANY_IS_BAD,
            ),
        ],
    )


def build() -> dict[str, Any]:
    return S.dashboard(
        uid=UID,
        title=TITLE,
        description="The GPUs of one deployment's pods (dcgm-exporter, through the inferwatch "
        "sidecar) beside the engine's KV cache and queue in the same pods.",
        variables=VARIABLES,
        rows=[_inventory(), _side_by_side(), _memory_and_energy(), _health()],
    )
