"""NVIDIA dcgm-exporter: this pod's GPUs in base units.

Sample output:

    llm_gpu_utilization_ratio{gpu="0",gpu_uuid="GPU-a839...",gpu_model="NVIDIA RTX 4000 ..."} 0.0
    llm_gpu_memory_used_bytes{gpu="0",gpu_uuid="GPU-a839...",gpu_model="..."} 1048576.0

Only the GPUs of this pod are kept: matched by the `pod`/`namespace` labels dcgm-exporter adds
when its Kubernetes mapping is on (`pod_name`/`pod_namespace` with `--use-old-namespace`), else
by the GPU UUIDs the pod was given.
"""

from __future__ import annotations

from inferwatch.exporters.adapter import Adapter, Concept, Source
from inferwatch.schema import Group, Kind

G, C = Kind.GAUGE, Kind.COUNTER

MIB = 1024 * 1024

_LABELS = {
    "gpu": "gpu",
    "UUID": "gpu_uuid",
    "uuid": "gpu_uuid",
    "modelName": "gpu_model",
    "GPU_I_ID": "gpu_instance",
}


def dcgm_blank(value: float) -> bool:
    """DCGM's "blank", "not found", "not supported" and "no permission" sentinels."""
    return (
        2147483632 <= value <= 2147483635  # DCGM_INT32_BLANK + 0..3
        or 140737488355328 <= value <= 140737488355331  # DCGM_FP64_BLANK + 0..3
        or value >= 9.2e18  # DCGM_INT64_BLANK + 0..3, as a float
    )


def _src(name: str, kind: Kind = G, scale: float = 1.0, **kw) -> Source:
    return Source(name, kind, labels=_LABELS, scale=scale, drop_if=dcgm_blank, **kw)


ADAPTER = Adapter(
    name="dcgm",
    title="dcgm-exporter",
    group=Group.GPU,
    detect=("DCGM_FI_",),
    versions="dcgm-exporter 3.x-4.x (GPU Operator v25.10), old and new label spellings",
    concepts=(
        Concept(
            "llm_gpu_utilization_ratio",
            (
                _src("DCGM_FI_DEV_GPU_UTIL", scale=0.01, note="percent"),
                _src(
                    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                    fallback=1,
                    note="MIG, where GPU_UTIL is not reported",
                ),
            ),
        ),
        Concept("llm_gpu_memory_used_bytes", (_src("DCGM_FI_DEV_FB_USED", scale=MIB, note="MiB"),)),
        Concept("llm_gpu_memory_free_bytes", (_src("DCGM_FI_DEV_FB_FREE", scale=MIB, note="MiB"),)),
        Concept("llm_gpu_power_watts", (_src("DCGM_FI_DEV_POWER_USAGE"),)),
        Concept("llm_gpu_temperature_celsius", (_src("DCGM_FI_DEV_GPU_TEMP"),)),
        Concept("llm_gpu_engine_active_ratio", (_src("DCGM_FI_PROF_GR_ENGINE_ACTIVE"),)),
        Concept(
            "llm_gpu_sm_active_ratio", (_src("DCGM_FI_PROF_SM_ACTIVE", note="off by default"),)
        ),
        Concept("llm_gpu_tensor_active_ratio", (_src("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"),)),
        Concept("llm_gpu_dram_active_ratio", (_src("DCGM_FI_PROF_DRAM_ACTIVE"),)),
        Concept("llm_gpu_xid_errors", (_src("DCGM_FI_DEV_XID_ERRORS", note="last XID code"),)),
        Concept(
            "llm_gpu_energy_joules_total",
            (_src("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C, scale=0.001, note="mJ"),),
        ),
    ),
    notes=(
        "Values at DCGM's blank/not-supported sentinels (e.g. 9223372036854775794) are dropped.",
        "Series are kept only for this pod's GPUs (see above); with no pod identity and no GPU "
        "UUIDs known (a local run), every GPU on the page is kept.",
    ),
)
