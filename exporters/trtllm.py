"""TensorRT-LLM: on Triton (the `tensorrtllm_backend`), and as `trtllm-serve`.

Sample output (Triton, ensemble in front of the `tensorrt_llm` model):

    llm_requests_running{engine="trtllm",model="tensorrt_llm"} 1
    llm_kv_cache_usage_ratio{engine="trtllm",model="tensorrt_llm",rank="1"} 0.4875
    llm_requests_waiting{engine="trtllm",model="ensemble"} 0

On Triton, the backend's own gauges (`nv_trt_llm_*`, iteration statistics) and Triton's
per-model counters (`nv_inference_*`, see the Triton adapter) share one page, labelled by
Triton `model`. A request to an ensemble passes through each of its models (`ensemble`,
`preprocessing`, `tensorrt_llm`, `postprocessing`), and Triton counts it in each: select one
model (the one clients call) rather than summing over models.

`trtllm-serve` (the OpenAI-compatible server) exposes vLLM-like names prefixed `trtllm_`,
labelled `model_name`.
"""

from __future__ import annotations

from inferwatch.exporters import triton
from inferwatch.exporters.adapter import Adapter, Concept, Source, Variant
from inferwatch.schema import Group, Kind

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

M = triton.MODEL


def _requests(request_type: str, **kw) -> Source:
    return Source(
        "nv_trt_llm_request_metrics", G, labels=M, match={"request_type": request_type}, **kw
    )


# TensorRT-LLM's finish reasons (`CompletionOutput.finish_reason`).
_FINISH = {
    "stop": "stop",
    "length": "length",
    "cancelled": "abort",
    "timeout": "abort",
    "unknown": None,
}
_SERVER_ERRORS = ("500", "502", "503", "504")

ADAPTER = Adapter(
    name="trtllm",
    title="TensorRT-LLM",
    group=Group.ENGINE,
    detect=("nv_trt_llm_", "trtllm_"),
    model_label="model_name",
    several_models=True,
    versions="Triton `tensorrtllm_backend` 0.x (custom metrics, with Triton 23.12+ core "
    "metrics), `trtllm-serve` 1.x (`trtllm_*`)",
    rank_note="Neither server reports ranks: TensorRT-LLM's tensor- and pipeline-parallel "
    "workers report through one executor. Triton's `version` is dropped (one version is "
    "loaded by default and counts add up over versions), except on the KV-cache ratio, where "
    "it becomes `rank`: each loaded version has its own KV cache, and ratios must not be "
    "summed.",
    concepts=(
        Concept(
            "llm_requests_running",
            (
                _requests("scheduled", note="requests in this iteration's batch (as GIE reads it)"),
                Source(
                    "trtllm_num_requests_running",
                    G,
                    note="trtllm-serve: active requests",
                ),
            ),
        ),
        Concept(
            "llm_requests_waiting",
            (
                _requests("waiting"),
                Source("trtllm_num_requests_waiting", G, note="trtllm-serve"),
                Source(
                    triton.waiting().sample,
                    G,
                    labels=M,
                    fallback=1,
                    note="Triton's queue, for the ensemble's other models",
                ),
            ),
        ),
        Concept(
            "llm_kv_cache_usage_ratio",
            (
                Source(
                    "nv_trt_llm_kv_cache_block_metrics",
                    G,
                    labels={**M, "version": "rank"},
                    match={"kv_cache_block_type": "fraction"},
                    note="used blocks / max blocks",
                ),
                Source("trtllm_kv_cache_utilization", G, note="trtllm-serve"),
            ),
        ),
        Concept(
            "llm_time_to_first_token_seconds",
            (
                triton.first_response(),
                Source("trtllm_time_to_first_token_seconds", H, note="trtllm-serve"),
            ),
        ),
        Concept(
            "llm_time_per_output_token_seconds",
            (
                Source(
                    "trtllm_time_per_output_token_seconds",
                    H,
                    note="trtllm-serve; one observation per request",
                ),
            ),
        ),
        Concept(
            "llm_request_duration_seconds",
            (Source("trtllm_e2e_request_latency_seconds", H, note="trtllm-serve"),),
        ),
        Concept(
            "llm_request_queue_duration_seconds",
            (Source("trtllm_request_queue_time_seconds", H, note="trtllm-serve"),),
        ),
        Concept(
            "llm_prompt_tokens_total",
            (
                Source(
                    "nv_llm_input_token_len",
                    H,
                    labels=M,
                    suffix="_sum",
                    note="sum of the per-request input-length histogram",
                ),
                Source("trtllm_prompt_tokens_total", C, note="trtllm-serve"),
            ),
        ),
        Concept(
            "llm_generation_tokens_total",
            (
                Source(
                    "nv_llm_output_token_len",
                    H,
                    labels=M,
                    suffix="_sum",
                    note="sum of the per-request output-length histogram",
                ),
                Source("trtllm_generation_tokens_total", C, note="trtllm-serve"),
            ),
        ),
        Concept(
            "llm_requests_finished_total",
            (
                *triton.outcomes(),
                Source(
                    "trtllm_request_success_total",
                    C,
                    labels={"finished_reason": "reason"},
                    values={"reason": _FINISH},
                    note="trtllm-serve: `cancelled` and `timeout` → `abort`",
                ),
                *(
                    Source(
                        "trtllm_request_error_total",
                        C,
                        match={"http_code": code},
                        set_labels={"reason": "error"},
                        note=f"trtllm-serve: HTTP {code} answers",
                    )
                    for code in _SERVER_ERRORS
                ),
            ),
            note="trtllm-serve's HTTP 4xx answers (the client's request refused) are left out, "
            "as vLLM never counts them either.",
        ),
        Concept(
            "llm_prefix_cache_queries_total",
            (
                Source("trtllm_kv_cache_reused_blocks_total", C, note="trtllm-serve; blocks"),
                Source("trtllm_kv_cache_missed_blocks_total", C, note="summed with the above"),
            ),
            note="Counted in KV blocks, not tokens: the hit ratio holds.",
        ),
        Concept(
            "llm_prefix_cache_hits_total",
            (Source("trtllm_kv_cache_reused_blocks_total", C, note="trtllm-serve; blocks"),),
        ),
        Concept("llm_engine_info", (), note="the model comes from the page"),
    ),
    notes=(
        *triton.CORE_NOTES,
        "Not mapped (Triton backend): `request_type` `active`, `context` and `max` (the batch "
        "limit, a setting stated as a gauge value), the KV block counts (`max`, `free`, "
        "`used`, `tokens_per`, `reused`), `nv_trt_llm_inflight_batcher_metrics`, "
        "`nv_trt_llm_runtime_memory_metrics`, `nv_trt_llm_general_metrics`.",
        "TensorRT-LLM reports neither inter-token latency nor preemptions.",
        "A Triton page without `nv_trt_llm_*` (before the first iteration, or Triton before "
        "23.12) is detected as plain Triton: pass `--engine trtllm` to pin it.",
    ),
    variants=(
        Variant("TensorRT-LLM on Triton", lacks=("trtllm_",)),
        Variant("trtllm-serve", lacks=("nv_",)),
    ),
)
