"""SGLang (`--enable-metrics`): the late-2024 collector, the docs-era page and 0.5.x.

Sample output (0.5.x, data parallel 2):

    llm_requests_running{engine="sglang",model="Qwen/Qwen2.5-7B-Instruct",rank="0"} 4.0
    llm_kv_cache_usage_ratio{engine="sglang",model="Qwen/Qwen2.5-7B-Instruct",rank="1"} 0.5
    llm_requests_finished_total{engine="sglang",model="Qwen/Qwen2.5-7B-Instruct",reason="stop"} 9.0

SGLang runs one scheduler process per GPU and one tokenizer process in front of them. The
scheduler's figures (batch, queue, KV pool, retractions, queue time) carry `tp_rank`,
`pp_rank`, `moe_ep_rank` and, under data parallelism, `dp_rank`; the tokenizer's (tokens,
requests, latencies) carry none of them, only `is_streaming` on some.
"""

from __future__ import annotations

from inferwatch.exporters.adapter import Adapter, Concept, Source
from inferwatch.schema import Group, Kind

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

# Late-2024 builds (PR #1853) name the model in `name`, later ones in `model_name`.
_OLD_MODEL = {"name": "model"}
# With priority scheduling on, queue gauges hold the total at `priority=""` and a breakdown
# per priority beside it: only the total is a count of requests.
_TOTAL = {"priority": ""}


def _scheduler(sample: str, kind: Kind, note: str = "", **match: str) -> tuple[Source, ...]:
    """One scheduler figure: pipeline stage 0's, or the only one a build without stages has.

    Pipeline stages run one scheduler each over the same requests, so their figures repeat
    one another; stage 0 speaks for all of them.
    """
    return (
        Source(sample, kind, labels=_OLD_MODEL, match={"pp_rank": "0", **match}, note=note),
        Source(
            sample,
            kind,
            labels=_OLD_MODEL,
            match=match,
            fallback=1,
            note="builds without `pp_rank`",
        ),
    )


def _tokenizer(sample: str, kind: Kind, **kw) -> Source:
    return Source(sample, kind, labels=_OLD_MODEL, **kw)


ADAPTER = Adapter(
    name="sglang",
    title="SGLang",
    group=Group.ENGINE,
    detect=("sglang:",),
    model_label="model_name",
    # `dp_rank` wins where both are present (the last one listed that the series has).
    rank_labels=("tp_rank", "dp_rank"),
    versions="late 2024 (PR #1853 collector, label `name`), the docs-era page (`model_name` "
    "only, `time_per_output_token_seconds`), 0.4.x-0.5.x (ranks, `is_streaming`, "
    "`priority`)",
    rank_note="Scheduler figures (requests running and waiting, KV usage, retractions, queue "
    "time) come from one scheduler per data-parallel rank: `dp_rank` becomes `rank`, so every "
    "DP rank keeps its own series and none is summed into another (a KV ratio summed over ranks "
    "would mean nothing). Without `dp_rank` (one scheduler group, or DP attention on builds "
    "that label groups only by their first TP rank), `tp_rank` becomes `rank`: SGLang writes "
    "scheduler figures only from the first TP rank of each attention group, so each rank "
    "present is a distinct scheduler. Pipeline stages repeat one scheduler's figures: only "
    "`pp_rank` 0 is read. `moe_ep_rank` and `engine_type` (one value per server) are dropped. "
    "Tokenizer figures (tokens, finished requests, TTFT, inter-token, TPOT, end-to-end) are "
    "counted once, in the tokenizer process, and carry no rank; their `is_streaming` split is "
    "summed, since each request is counted under exactly one of its two values. With "
    "`--enable-metrics-for-all-schedulers` every TP rank of a group reports the same figures: "
    "with `dp_rank` they add up within a rank, without it they show as extra ranks; leave that "
    "debugging flag off in production.",
    concepts=(
        Concept(
            "llm_requests_running",
            (
                *_scheduler("sglang:num_running_reqs", G, **_TOTAL),
                Source(
                    "sglang:num_requests_running",
                    G,
                    labels=_OLD_MODEL,
                    fallback=2,
                    note="late-2024 name",
                ),
            ),
        ),
        Concept(
            "llm_requests_waiting",
            (
                *_scheduler("sglang:num_queue_reqs", G, **_TOTAL),
                Source(
                    "sglang:num_requests_waiting",
                    G,
                    labels=_OLD_MODEL,
                    fallback=2,
                    note="late-2024 name",
                ),
            ),
            note="The main waiting queue; the grammar queue and the PD-disaggregation queues "
            "(bootstrap, prealloc, transfer) are not added in.",
        ),
        Concept(
            "llm_kv_cache_usage_ratio",
            _scheduler(
                "sglang:token_usage",
                G,
                note="KV pool usage, 0..1; for hybrid models the fullest of its pools",
            ),
        ),
        Concept(
            "llm_time_to_first_token_seconds",
            (_tokenizer("sglang:time_to_first_token_seconds", H),),
        ),
        Concept(
            "llm_inter_token_latency_seconds",
            (
                _tokenizer("sglang:inter_token_latency_seconds", H),
                _tokenizer(
                    "sglang:time_per_output_token_seconds",
                    H,
                    fallback=1,
                    note="docs-era name; observed per token, so it is inter-token latency",
                ),
            ),
        ),
        Concept(
            "llm_time_per_output_token_seconds",
            (_tokenizer("sglang:request_time_per_output_token_seconds", H, note="0.5.x"),),
        ),
        Concept(
            "llm_request_duration_seconds",
            (_tokenizer("sglang:e2e_request_latency_seconds", H),),
        ),
        Concept(
            "llm_request_queue_duration_seconds",
            _scheduler("sglang:queue_time_seconds", H),
        ),
        Concept(
            "llm_prompt_tokens_total",
            (
                _tokenizer("sglang:prompt_tokens_total", C),
                _tokenizer(
                    "sglang:request_prompt_tokens",
                    H,
                    suffix="_sum",
                    fallback=1,
                    note="late 2024: sum of the per-request prompt-length histogram",
                ),
            ),
        ),
        Concept("llm_generation_tokens_total", (_tokenizer("sglang:generation_tokens_total", C),)),
        Concept(
            "llm_requests_finished_total",
            (
                _tokenizer(
                    "sglang:num_requests_total",
                    C,
                    set_labels={"reason": "stop"},
                    note="requests that finished generating; SGLang does not split stop from "
                    "length, so they count as `stop`",
                ),
                _tokenizer(
                    "sglang:num_aborted_requests_total",
                    C,
                    set_labels={"reason": "abort"},
                    note="aborts (client gone, abort requests), counted apart from the above",
                ),
            ),
        ),
        Concept(
            "llm_preemptions_total",
            _scheduler(
                "sglang:num_retracted_requests_total",
                C,
                note="retractions: decoding requests sent back to the queue for lack of KV",
            ),
        ),
        Concept(
            "llm_engine_info",
            (),
            note="SGLang states its configuration as gauges (`max_total_num_tokens`, "
            "`page_size`, `context_len`), not as info labels; the model comes from the page.",
        ),
    ),
    notes=(
        "Not mapped: `sglang:cache_hit_rate` (a ratio gauge: it cannot be turned into the prefix "
        "cache counters), `sglang:cached_tokens_total` (cached tokens with no matching count of "
        "tokens looked up), `sglang:func_latency_seconds` (the time of one internal function, "
        "not a request), `sglang:gen_throughput` (use the token counters), the retraction gauge "
        "`sglang:num_retracted_reqs` (the counter above replaces it).",
        "Late-2024 builds also declare `sglang:request_success_total{finished_reason}`, but "
        "never increment it, so it never appears on a page.",
    ),
)
