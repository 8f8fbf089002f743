"""llama.cpp `llama-server --metrics`: builds before and after PR #13660 (May 2025).

Sample output:

    llm_requests_running{engine="llamacpp",model="qwen2.5-7b-instruct-q4_k_m.gguf"} 1
    llm_prompt_tokens_total{engine="llamacpp",model="qwen2.5-7b-instruct-q4_k_m.gguf"} 33065

llama-server labels nothing: the model comes from `--model`, else `GET /v1/models` (the
`--alias`, or the model path) or `GET /props`. It has no histograms, so no latency concept is
reported, and no request outcomes.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from inferwatch.exporters.adapter import Adapter, Concept, InfoEndpoint, Source, Variant
from inferwatch.schema import Group, Kind

G, C = Kind.GAUGE, Kind.COUNTER


def _parse_props(doc: dict) -> tuple[str | None, dict[str, str]]:
    info: dict[str, str] = {}
    if doc.get("build_info"):
        info["version"] = str(doc["build_info"])
    if isinstance(doc.get("total_slots"), int):
        info["max_num_seqs"] = str(doc["total_slots"])
    settings = doc.get("default_generation_settings")
    if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
        info["max_model_len"] = str(settings["n_ctx"])  # per slot
    model = doc.get("model_alias") or None
    if model is None and doc.get("model_path"):
        model = PurePosixPath(str(doc["model_path"])).name
    return (str(model) if model else None), info


def _parse_models(doc: dict) -> tuple[str | None, dict[str, str]]:
    data = doc.get("data") or []
    if not data or not isinstance(data[0], dict) or not data[0].get("id"):
        return None, {}
    return str(data[0]["id"]), {}


ADAPTER = Adapter(
    name="llamacpp",
    title="llama.cpp",
    group=Group.ENGINE,
    detect=("llamacpp:",),
    model_label=None,
    versions="`llama-server` builds from 2024 to late 2025: with `kv_cache_usage_ratio` "
    "(before PR #13660), without it, and with `n_tokens_max`",
    rank_note="One server, one set of slots: no ranks.",
    info_endpoints=(
        InfoEndpoint("/v1/models", _parse_models),
        InfoEndpoint("/props", _parse_props),
    ),
    concepts=(
        Concept(
            "llm_requests_running",
            (Source("llamacpp:requests_processing", G, note="slots processing a request"),),
        ),
        Concept(
            "llm_requests_waiting",
            (Source("llamacpp:requests_deferred", G, note="requests waiting for a free slot"),),
        ),
        Concept(
            "llm_kv_cache_usage_ratio",
            (
                Source(
                    "llamacpp:kv_cache_usage_ratio",
                    G,
                    note="builds before PR #13660 (May 2025), which removed it",
                ),
            ),
        ),
        Concept("llm_prompt_tokens_total", (Source("llamacpp:prompt_tokens_total", C),)),
        Concept("llm_generation_tokens_total", (Source("llamacpp:tokens_predicted_total", C),)),
        Concept(
            "llm_engine_info",
            (),
            note="from `GET /props`: `build_info` as version, `total_slots` as max_num_seqs, "
            "the per-slot context as max_model_len",
        ),
    ),
    notes=(
        "Not mapped: `llamacpp:n_busy_slots_per_decode` and `llamacpp:n_tokens_max` are typed "
        "counter but are an average and a high-water mark (the first prints `nan` before any "
        "decode); the schema has no place for either, and exposing them as counters would make "
        "`rate()` lie. `llamacpp:prompt_seconds_total` and "
        "`llamacpp:tokens_predicted_seconds_total` (busy time, not per-request latency), the "
        "throughput gauges `prompt_tokens_seconds` and `predicted_tokens_seconds`, "
        "`n_decode_total`, and the old `kv_cache_tokens` (a count with no capacity beside it).",
        "Absent: every latency histogram, request outcomes, preemptions, prefix caching.",
    ),
    variants=(Variant("llama.cpp after PR #13660", lacks=("llamacpp:kv_cache_usage_ratio",)),),
)
