"""The normalized metric schema: the contract every part of inferwatch shares.

Adapters map engine metrics onto these families; dashboards, rules, the advisor and the docs
read names, types, units and labels from here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


class Group(StrEnum):
    """Which part of the sidecar produces a family: an engine adapter or the GPU source."""

    ENGINE = "engine"
    GPU = "gpu"


# Labels every engine series carries (set by the exporter), and every GPU series carries.
ENGINE_LABELS: tuple[str, ...] = ("engine", "model")
GPU_LABELS: tuple[str, ...] = ("gpu", "gpu_uuid", "gpu_model")
# Labels Prometheus adds from the scrape target (PodMonitor relabelling); never set by us.
TARGET_LABELS: tuple[str, ...] = ("namespace", "pod", "container", "deployment")
# Engine-internal replica index (vLLM V1 `engine`, SGLang `dp_rank`), kept so no rank is lost.
RANK_LABEL = "rank"
# MIG instance id on GPU series, so two instances of one GPU never collide.
GPU_INSTANCE_LABEL = "gpu_instance"
# On series the sidecar's proxy mode measures from the requests it forwards, rather than reads
# from the engine's /metrics: `source="proxy"`. Engine-side series carry no `source`, so a
# request counted by both an engine and a proxy in front of it is two series, never one sum.
SOURCE_LABEL = "source"
PROXY_SOURCE = "proxy"

ENGINES: tuple[str, ...] = ("vllm", "tgi", "sglang", "trtllm", "triton", "llamacpp", "ollama")
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "abort", "error")
# Finish reasons that count against availability.
ERROR_REASONS: tuple[str, ...] = ("abort", "error")

# What `llm_engine_info` may state about an engine's configuration, beyond engine/model/version.
ENGINE_INFO_LABELS: tuple[str, ...] = (
    "version",
    "block_size",
    "gpu_memory_utilization",
    "kv_cache_blocks",
    "kv_cache_tokens",
    "kv_cache_dtype",
    "max_num_seqs",
    "max_num_batched_tokens",
    "max_concurrent_requests",
    "max_waiting_tokens",
    "max_model_len",
    "prefix_caching",
    "swap_space_bytes",
    "model_bytes",
    "model_vram_bytes",
)


@dataclass(frozen=True)
class Family:
    name: str
    kind: Kind
    unit: str
    help: str
    group: Group = Group.ENGINE
    labels: tuple[str, ...] = ()  # extra labels beyond the group's common ones
    optional_labels: tuple[str, ...] = field(default=(RANK_LABEL,))

    @property
    def common_labels(self) -> tuple[str, ...]:
        return ENGINE_LABELS if self.group is Group.ENGINE else GPU_LABELS

    @property
    def sample_names(self) -> tuple[str, ...]:
        if self.kind is Kind.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_E, _G = Group.ENGINE, Group.GPU
_GPU_OPT = (GPU_INSTANCE_LABEL,)
# Families the proxy mode measures (exporters/measure.py), which may carry `source`.
_MEASURED = (RANK_LABEL, SOURCE_LABEL)

FAMILIES: tuple[Family, ...] = (
    Family(
        "llm_requests_running",
        Kind.GAUGE,
        "requests",
        "Requests being processed (in the running batch).",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_requests_waiting",
        Kind.GAUGE,
        "requests",
        "Requests queued, not yet scheduled (the queue length).",
    ),
    Family(
        "llm_kv_cache_usage_ratio", Kind.GAUGE, "ratio", "Fraction of the KV cache in use, 0..1."
    ),
    Family(
        "llm_time_to_first_token_seconds",
        Kind.HISTOGRAM,
        "seconds",
        "Time to first token, per request.",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_inter_token_latency_seconds",
        Kind.HISTOGRAM,
        "seconds",
        "Time between consecutive output tokens, per token.",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_time_per_output_token_seconds",
        Kind.HISTOGRAM,
        "seconds",
        "Mean time per output token, per request (TPOT).",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_request_duration_seconds",
        Kind.HISTOGRAM,
        "seconds",
        "End-to-end request latency.",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_request_queue_duration_seconds",
        Kind.HISTOGRAM,
        "seconds",
        "Time spent waiting before scheduling.",
    ),
    Family(
        "llm_prompt_tokens_total",
        Kind.COUNTER,
        "tokens",
        "Prompt (prefill) tokens processed.",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_generation_tokens_total",
        Kind.COUNTER,
        "tokens",
        "Tokens generated.",
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_requests_finished_total",
        Kind.COUNTER,
        "requests",
        "Finished requests by reason: stop, length, abort, error.",
        labels=("reason",),
        optional_labels=_MEASURED,
    ),
    Family(
        "llm_preemptions_total",
        Kind.COUNTER,
        "preemptions",
        "Requests preempted for lack of KV cache.",
    ),
    Family(
        "llm_prefix_cache_queries_total",
        Kind.COUNTER,
        "tokens",
        "Tokens looked up in the prefix cache.",
    ),
    Family(
        "llm_prefix_cache_hits_total", Kind.COUNTER, "tokens", "Tokens found in the prefix cache."
    ),
    Family(
        "llm_engine_info",
        Kind.GAUGE,
        "info",
        "Engine identity and configuration as the engine states it (value 1).",
        labels=(),
        optional_labels=(RANK_LABEL, *ENGINE_INFO_LABELS),
    ),
    Family(
        "llm_gpu_utilization_ratio",
        Kind.GAUGE,
        "ratio",
        "GPU busy fraction, 0..1.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_memory_used_bytes",
        Kind.GAUGE,
        "bytes",
        "GPU framebuffer memory used.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_memory_free_bytes",
        Kind.GAUGE,
        "bytes",
        "GPU framebuffer memory free.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_power_watts", Kind.GAUGE, "watts", "GPU power draw.", _G, optional_labels=_GPU_OPT
    ),
    Family(
        "llm_gpu_temperature_celsius",
        Kind.GAUGE,
        "celsius",
        "GPU temperature.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_engine_active_ratio",
        Kind.GAUGE,
        "ratio",
        "Graphics/compute engine activity, 0..1 (works on MIG).",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_sm_active_ratio",
        Kind.GAUGE,
        "ratio",
        "SM activity, 0..1.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_tensor_active_ratio",
        Kind.GAUGE,
        "ratio",
        "Tensor-core pipe activity, 0..1.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_dram_active_ratio",
        Kind.GAUGE,
        "ratio",
        "Memory-bandwidth activity, 0..1.",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_xid_errors",
        Kind.GAUGE,
        "code",
        "Last XID error code reported (0 = none).",
        _G,
        optional_labels=_GPU_OPT,
    ),
    Family(
        "llm_gpu_energy_joules_total",
        Kind.COUNTER,
        "joules",
        "GPU energy consumed since boot.",
        _G,
        optional_labels=_GPU_OPT,
    ),
)

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
ENGINE_FAMILIES: tuple[Family, ...] = tuple(f for f in FAMILIES if f.group is Group.ENGINE)
GPU_FAMILIES: tuple[Family, ...] = tuple(f for f in FAMILIES if f.group is Group.GPU)
HISTOGRAMS: tuple[Family, ...] = tuple(f for f in FAMILIES if f.kind is Kind.HISTOGRAM)
PROXY_FAMILIES: tuple[Family, ...] = tuple(f for f in FAMILIES if SOURCE_LABEL in f.optional_labels)

# The exporter's own health series.
EXPORTER_FAMILIES: tuple[Family, ...] = (
    Family(
        "inferwatch_exporter_upstream_up",
        Kind.GAUGE,
        "bool",
        "1 if the last fetch of this source succeeded and parsed, else 0.",
        labels=("source",),
        optional_labels=(),
    ),
    Family(
        "inferwatch_exporter_scrape_duration_seconds",
        Kind.GAUGE,
        "seconds",
        "Time the last fetch and normalization of this source took.",
        labels=("source",),
        optional_labels=(),
    ),
    Family(
        "inferwatch_exporter_parse_errors_total",
        Kind.COUNTER,
        "lines",
        "Lines of this source skipped because they could not be parsed.",
        labels=("source",),
        optional_labels=(),
    ),
    Family(
        "inferwatch_exporter_build_info",
        Kind.GAUGE,
        "info",
        "inferwatch build information (value 1).",
        labels=("version",),
        optional_labels=(),
    ),
)


def family(name: str) -> Family:
    """Look up a normalized family by name; a KeyError names what was asked for."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a family of the normalized schema") from None
