"""vLLM: V0 (0.5/0.6), the 0.9-0.11 transition, and V1 (0.12+).

Sample output (V1, one engine core):

    llm_requests_waiting{engine="vllm",model="tiny",rank="0"} 0.0
    llm_kv_cache_usage_ratio{engine="vllm",model="tiny",rank="0"} 0.0
    llm_requests_finished_total{engine="vllm",model="tiny",rank="0",reason="length"} 17.0

vLLM V1 labels every series with `engine`, the engine-core index under data parallelism. It
becomes `rank`, so it never collides with our `engine` label and no core's data is lost.
"""

from __future__ import annotations

from inferwatch.exporters.adapter import Adapter, Concept, InfoEndpoint, Source, negative
from inferwatch.schema import Group, Kind

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

_FINISH = {"finished_reason": "reason"}
# vLLM 0.33 adds `repetition` (stopped by repetition detection): a stop, as far as SLOs go.
_FINISH_VALUES = {"reason": {"repetition": "stop"}}

_CACHE_CONFIG = {
    "block_size": "block_size",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "num_gpu_blocks": "kv_cache_blocks",
    "kv_cache_size_tokens": "kv_cache_tokens",
    "cache_dtype": "kv_cache_dtype",
    "enable_prefix_caching": "prefix_caching",
    "swap_space_bytes": "swap_space_bytes",
}


def _derive_info(labels: dict[str, str]) -> dict[str, str]:
    derived: dict[str, str] = {}
    blocks, size = labels.get("kv_cache_blocks"), labels.get("block_size")
    if "kv_cache_tokens" not in labels and blocks and size and blocks.isdigit() and size.isdigit():
        derived["kv_cache_tokens"] = str(int(blocks) * int(size))
    if "prefix_caching" in labels:
        derived["prefix_caching"] = labels["prefix_caching"].lower()
    return derived


def _parse_version(doc: dict) -> tuple[str | None, dict[str, str]]:
    version = doc.get("version")
    return None, ({"version": str(version)} if version else {})


def _parse_models(doc: dict) -> tuple[str | None, dict[str, str]]:
    data = doc.get("data") or []
    if not data or not isinstance(data[0], dict):
        return None, {}
    card = data[0]
    info = {}
    if card.get("max_model_len"):
        info["max_model_len"] = str(card["max_model_len"])
    return card.get("id"), info


ADAPTER = Adapter(
    name="vllm",
    title="vLLM",
    group=Group.ENGINE,
    detect=("vllm:",),
    model_label="model_name",
    rank_labels=("engine",),
    versions="V0 0.5-0.8, 0.9-0.11 (old and new names side by side), V1 0.12-0.33",
    rank_note="V1's `engine` label (engine-core index under data parallelism) is kept as "
    "`rank`: every concept keeps one series per core, so no core is lost or counted twice.",
    info_endpoints=(
        InfoEndpoint("/version", _parse_version),
        InfoEndpoint("/v1/models", _parse_models),
    ),
    info_derive=_derive_info,
    concepts=(
        Concept("llm_requests_running", (Source("vllm:num_requests_running", G),)),
        Concept("llm_requests_waiting", (Source("vllm:num_requests_waiting", G),)),
        Concept(
            "llm_kv_cache_usage_ratio",
            (
                Source("vllm:kv_cache_usage_perc", G, note="a 0..1 ratio despite `_perc`"),
                Source(
                    "vllm:gpu_cache_usage_perc",
                    G,
                    fallback=1,
                    note="V0 and 0.9-0.11 (deprecated name, same data)",
                ),
            ),
        ),
        Concept(
            "llm_time_to_first_token_seconds", (Source("vllm:time_to_first_token_seconds", H),)
        ),
        Concept(
            "llm_inter_token_latency_seconds",
            (
                Source("vllm:inter_token_latency_seconds", H),
                Source(
                    "vllm:time_per_output_token_seconds",
                    H,
                    fallback=1,
                    note="V0-0.12 name; observed per token, so it is inter-token latency",
                ),
            ),
        ),
        Concept(
            "llm_time_per_output_token_seconds",
            (Source("vllm:request_time_per_output_token_seconds", H, note="0.11+"),),
            note="Per-request TPOT exists from 0.11; older vLLM reports only per-token latency.",
        ),
        Concept("llm_request_duration_seconds", (Source("vllm:e2e_request_latency_seconds", H),)),
        Concept(
            "llm_request_queue_duration_seconds",
            (Source("vllm:request_queue_time_seconds", H, note="late V0 and V1"),),
        ),
        Concept("llm_prompt_tokens_total", (Source("vllm:prompt_tokens_total", C),)),
        Concept("llm_generation_tokens_total", (Source("vllm:generation_tokens_total", C),)),
        Concept(
            "llm_requests_finished_total",
            (
                Source(
                    "vllm:request_success_total",
                    C,
                    labels=_FINISH,
                    values=_FINISH_VALUES,
                    note="counts every finished request, aborts included; "
                    "`repetition` counts as `stop`",
                ),
                Source(
                    "vllm:admission_rejections_total",
                    C,
                    set_labels={"reason": "error"},
                    note="0.32+: requests refused by a queue limit",
                ),
            ),
        ),
        Concept("llm_preemptions_total", (Source("vllm:num_preemptions_total", C),)),
        Concept(
            "llm_prefix_cache_queries_total",
            (
                Source("vllm:prefix_cache_queries_total", C),
                Source(
                    "vllm:gpu_prefix_cache_queries_total",
                    C,
                    fallback=1,
                    note="early V1 name; counted blocks, not tokens (the hit ratio holds)",
                ),
            ),
            note="V0 has only a hit-rate gauge (-1 when prefix caching is off): a ratio cannot "
            "be turned into counters, so V0 reports neither.",
        ),
        Concept(
            "llm_prefix_cache_hits_total",
            (
                Source("vllm:prefix_cache_hits_total", C),
                Source(
                    "vllm:gpu_prefix_cache_hits_total",
                    C,
                    fallback=1,
                    note="early V1 name; counted blocks",
                ),
            ),
        ),
        Concept(
            "llm_engine_info",
            (Source("vllm:cache_config_info", G, labels=_CACHE_CONFIG, drop_if=negative),),
            note="`version` from `GET /version`, `max_model_len` from `GET /v1/models`.",
        ),
    ),
    notes=(
        "Not mapped: `vllm:num_requests_swapped` and `vllm:cpu_cache_usage_perc` (V0 swap mode; "
        "no V1 equivalent), the V0 prefix-cache hit-rate gauges, the deprecated "
        "`avg_*_throughput_toks_per_s` gauges (use the token counters).",
    ),
)
