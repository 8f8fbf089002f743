"""Hugging Face TGI 1.x-3.x (metric names unchanged from 0.9 to 3.3).

Sample output:

    llm_requests_waiting{engine="tgi",model="mistralai/Mistral-7B-Instruct-v0.2"} 3
    llm_request_duration_seconds_bucket{engine="tgi",model="...",le="0.00015"} 0

TGI's counters carry no `_total` suffix and no model label: the model comes from `--model` or
the engine's `GET /info`. TGI has no time-to-first-token histogram and no KV-cache gauge, so
those concepts are absent for TGI, never zero.
"""

from __future__ import annotations

from inferwatch.exporters.adapter import Adapter, Concept, InfoEndpoint, Source
from inferwatch.schema import Group, Kind

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

# `validation` and `template` failures are the client's request refused before the queue;
# vLLM never counts those either, so they stay out of the finished-request outcomes.
_FAILURE_REASONS: dict[str, str | None] = {
    "validation": None,
    "template": None,
    "overloaded": "error",
    "incomplete": "error",
    "generation": "error",
    "dropped": "abort",
}

_INFO_FIELDS = {
    "version": "version",
    "max_batch_total_tokens": "kv_cache_tokens",
    "max_total_tokens": "max_model_len",
    "max_batch_size": "max_num_seqs",
    "max_concurrent_requests": "max_concurrent_requests",
    "max_waiting_tokens": "max_waiting_tokens",
    "max_batch_prefill_tokens": "max_num_batched_tokens",
}


def _parse_info(doc: dict) -> tuple[str | None, dict[str, str]]:
    info = {
        label: str(doc[field])
        for field, label in _INFO_FIELDS.items()
        if doc.get(field) is not None
    }
    return doc.get("model_id"), info


ADAPTER = Adapter(
    name="tgi",
    title="TGI",
    group=Group.ENGINE,
    detect=("tgi_",),
    model_label=None,
    versions="0.9, 1.x, 2.x, 3.x (names unchanged; v2.4 adds batch token gauges)",
    rank_note="TGI shards (tensor parallelism) report through one router: no ranks.",
    info_endpoints=(InfoEndpoint("/info", _parse_info),),
    concepts=(
        Concept("llm_requests_running", (Source("tgi_batch_current_size", G),)),
        Concept("llm_requests_waiting", (Source("tgi_queue_size", G),)),
        Concept(
            "llm_time_per_output_token_seconds",
            (
                Source(
                    "tgi_request_mean_time_per_token_duration",
                    H,
                    note="per-request mean time per token",
                ),
            ),
        ),
        Concept("llm_request_duration_seconds", (Source("tgi_request_duration", H),)),
        Concept("llm_request_queue_duration_seconds", (Source("tgi_request_queue_duration", H),)),
        Concept(
            "llm_prompt_tokens_total",
            (
                Source(
                    "tgi_request_input_length",
                    H,
                    suffix="_sum",
                    note="sum of the per-request prompt-length histogram",
                ),
            ),
        ),
        Concept(
            "llm_generation_tokens_total",
            (
                Source(
                    "tgi_request_generated_tokens",
                    H,
                    suffix="_sum",
                    note="sum of the per-request generated-length histogram",
                ),
            ),
        ),
        Concept(
            "llm_requests_finished_total",
            (
                Source(
                    "tgi_request_success",
                    C,
                    set_labels={"reason": "stop"},
                    note="TGI does not split stop from length: successes count as `stop`",
                ),
                Source(
                    "tgi_request_failure",
                    C,
                    labels={"err": "reason"},
                    values={"reason": _FAILURE_REASONS},
                    note="`overloaded`, `incomplete`, `generation` → `error`; `dropped` → "
                    "`abort`; `validation` and `template` (refused before the queue) "
                    "are left out",
                ),
            ),
        ),
        Concept(
            "llm_engine_info",
            (),
            note="from `GET /info`: version, max_batch_total_tokens "
            "(KV capacity), max_total_tokens, max_batch_size, max_concurrent_requests, "
            "max_waiting_tokens, max_batch_prefill_tokens",
        ),
    ),
    notes=(
        "Absent: time to first token (TGI has no such histogram), KV-cache usage (no gauge of "
        "used KV tokens), inter-token latency per token, preemptions, prefix caching.",
    ),
)
