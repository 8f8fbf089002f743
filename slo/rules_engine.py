"""Engine-flag rules: KV cache, batch limit, prefill budget, swap space, block size, and TGI's
router limits. Each takes `(Inputs, Outcome)`; the thresholds are the constants below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from inferwatch.slo.figures import Evidence
from inferwatch.slo.flags import format_value
from inferwatch.slo.objectives import pct
from inferwatch.slo.rule_inputs import (
    MIN_REQUESTS,
    Inputs,
    Outcome,
    flag_recommendation,
    gib,
    gpu_supports_fp8,
    known,
    kv_bytes_per_token,
    met,
    objective_for,
    observed,
    pow2_at_least,
    ratio_text,
    round_up,
    sentence,
    tokens_per_request,
)

# When a rule fires.
KV_SATURATED = 0.90  # KV-cache usage p95 at or above: saturated
KV_MOSTLY_EMPTY = 0.50  # p95 below: room for more sequences
PREEMPTION_SHARE = 0.01  # preemptions per finished request that count as thrashing
QUEUEING = 1.0  # mean waiting requests per pod that count as a queue
BATCH_AT_LIMIT = 0.9  # running batch p95 at this share of its limit: the limit binds
LONG_PROMPT_TOKENS = 1024  # mean prompt length that makes the prefill budget matter
HEADROOM = 0.7  # a latency at or under this share of its target has room to give
ERROR_SHARE = 0.01  # refused requests share that points at the concurrency limit
TGI_SLOW_QUEUE_SECONDS = 1.0  # queue-time p95 that TGI's --max-waiting-tokens can cut

# What the proposals aim at.
MEMORY_CEILING = 0.95  # never propose more than this share of GPU memory
MEMORY_MARGIN = 0.02  # of the GPU's memory, left free for other processes and fragmentation
KV_TARGET = 0.9  # lower the batch limit until the KV cache would be this full
KV_GROWTH_TARGET = 0.8  # raise the batch limit until the KV cache would be this full
BATCH_BUDGET_CAP = 32768  # largest prefill token budget proposed
BATCH_BUDGET_FLOOR = 2048  # smallest prefill token budget proposed
DEFAULT_BATCH_BUDGET = 8192  # the seed's --max-num-batched-tokens, when the current is unknown
SWAP_CAP_GIB = 32.0
BLOCK_WASTE = 0.05  # share of the KV cache lost to half-empty last blocks that is worth fixing


@dataclass(frozen=True)
class Knobs:
    """The engine's flag for each lever, None where it has none."""

    memory: str | None = None
    max_seqs: str | None = None
    prefill_budget: str | None = None
    kv_dtype: str | None = None
    block_size: str | None = None
    swap: str | None = None


KNOBS: dict[str, Knobs] = {
    "vllm": Knobs(
        memory="--gpu-memory-utilization",
        max_seqs="--max-num-seqs",
        prefill_budget="--max-num-batched-tokens",
        kv_dtype="--kv-cache-dtype",
        block_size="--block-size",
        swap="--swap-space",
    ),
    "sglang": Knobs(
        memory="--mem-fraction-static",
        max_seqs="--max-running-requests",
        prefill_budget="--chunked-prefill-size",
        kv_dtype="--kv-cache-dtype",
    ),
}


def _kv_thrashing(x: Inputs) -> tuple[float, float, float] | None:
    """(KV p95, preemptions, requests) when the cache is saturated and preempting."""
    fig = x.figures
    kv95 = fig.gauge("kv_cache_usage", "p95")
    preempted, requests = fig.counters.get("preemptions"), fig.requests
    # A preemption share needs enough requests to mean anything (the gaps say so).
    if kv95 is None or kv95 < KV_SATURATED or preempted is None or not requests:
        return None
    if requests < MIN_REQUESTS:
        return None
    if preempted <= 0 or preempted / requests < PREEMPTION_SHARE:
        return None
    return kv95, preempted, requests


def kv_saturated(x: Inputs, out: Outcome) -> None:
    knobs = KNOBS.get(x.engine or "")
    fig = x.figures
    if knobs is None or fig.gauge("kv_cache_usage", "p95") is None:
        return
    found = _kv_thrashing(x)
    if found is None:
        full = (fig.gauge("kv_cache_usage", "p95") or 0) >= KV_SATURATED
        if full and "preemptions" not in fig.counters:
            out.notes.append(
                "The KV cache is nearly full but the engine reports no preemption counter: "
                "whether it thrashes cannot be told."
            )
        return
    kv95, preempted, requests = found
    share = preempted / requests
    evidence = [
        fig.evidence_gauge("kv_cache_usage", "p95"),
        fig.evidence_counter("preemptions"),
        fig.evidence_requests(),
    ]
    headline_text = (
        f"the KV cache is {ratio_text(kv95)} full at p95 and {preempted:.0f} preemptions hit "
        f"{ratio_text(share)} of {requests:.0f} requests"
    )
    if _raise_memory(x, out, knobs, evidence, headline_text):
        return
    _lower_batch_limit(x, out, knobs, evidence, headline_text, kv95)
    _fp8_kv_cache(x, out, knobs, evidence, headline_text)


def _raise_memory(
    x: Inputs, out: Outcome, knobs: Knobs, evidence: list[Evidence], why: str
) -> bool:
    fig = x.figures
    name = knobs.memory
    if name is None:
        return False
    free_min = fig.gauge("gpu_memory_free_ratio", "min")
    if free_min is None:
        out.missing.append(
            f"GPU memory (llm_gpu_memory_free_bytes and _used_bytes, from dcgm-exporter) is not "
            f"reported, so whether {name} can go up cannot be told"
        )
        return False
    current = known(x, name)
    if not isinstance(current, int | float):
        out.missing.append(f"the current {name} is unknown ({x.flags[name].describe()})")
        return False
    proposed = min(MEMORY_CEILING, math.floor((current + free_min - MEMORY_MARGIN) * 100) / 100)
    if proposed < current + 0.02:
        out.notes.append(
            f"The GPU has {ratio_text(free_min)} of its memory free at least: {name} "
            f"{format_value(current)} cannot usefully go up."
        )
        return False
    total = fig.gpu_total_bytes
    free_bytes = fig.gauge("gpu_memory_free_bytes", "min")
    if total is None and free_bytes is not None and free_min > 0:
        total = free_bytes / free_min
    gained = (proposed - current) * total if total else None
    effect = "A larger KV cache holds more sequences at once, so preemptions fall"
    per_token = kv_bytes_per_token(fig, str(known(x, knobs.kv_dtype) or "auto"))
    if gained:
        effect = f"The KV cache gains about {gib(gained)}"
        if per_token:
            tokens = gained / per_token
            effect += f" (about {tokens:,.0f} tokens at {per_token // 1024} KiB per token"
            stated = fig.info.get("kv_cache_tokens")
            if stated and stated.isdigit() and int(stated) > 0:
                effect += f", +{tokens / int(stated):.0%} of its {int(stated):,} tokens"
            effect += ")"
        effect += ", so more sequences fit and preemptions fall."
    if x.engine == "sglang":
        effect += " SGLang's guide: raise it in steps of 0.01 until activations run short."
    out.recommendations.append(
        flag_recommendation(
            x,
            name,
            proposed,
            "raise",
            f"{sentence(why)}, while the GPU keeps {ratio_text(free_min)} of its memory free: "
            f"give that memory to the KV cache.",
            effect,
            "high",
            [
                *evidence,
                fig.evidence_gauge("gpu_memory_free_ratio", "min"),
                fig.evidence_gauge("gpu_memory_free_bytes", "min"),
            ],
            gpu_memory_free_ratio_min=free_min,
        )
    )
    return True


def _lower_batch_limit(
    x: Inputs, out: Outcome, knobs: Knobs, evidence: list[Evidence], why: str, kv95: float
) -> None:
    fig = x.figures
    name = knobs.max_seqs
    running = fig.gauge("requests_running", "p95")
    if name is None or running is None or running < 2:
        return
    proposed = max(1, math.floor(running * KV_TARGET / kv95))
    current = known(x, name)
    if isinstance(current, int | float):
        proposed = min(proposed, math.floor(current * KV_TARGET))
        if proposed >= current:
            return
    out.recommendations.append(
        flag_recommendation(
            x,
            name,
            proposed,
            "lower",
            f"{sentence(why)} and the GPU has no memory to spare: admit only as many "
            f"sequences as the cache holds.",
            f"About {proposed} sequences run at once (p95 now {running:.0f}), keeping the KV "
            f"cache near {KV_TARGET:.0%}: preempted requests stop being recomputed, which "
            "saves their wasted prefill; the extra requests wait in the queue instead, so add "
            "replicas if the queue grows.",
            "medium",
            [*evidence, fig.evidence_gauge("requests_running", "p95")],
        )
    )


def _fp8_kv_cache(
    x: Inputs, out: Outcome, knobs: Knobs, evidence: list[Evidence], why: str
) -> None:
    name = knobs.kv_dtype
    if name is None:
        return
    current = known(x, name)
    if isinstance(current, str) and current.startswith("fp8"):
        return
    fp8 = gpu_supports_fp8(x.figures.gpu_model)
    if fp8 is False:
        out.notes.append(
            f"An FP8 KV cache would double its capacity, but {x.figures.gpu_model} has no FP8 "
            "tensor cores."
        )
        return
    note = "" if fp8 else " (the GPU model is not reported: check it has FP8 support)"
    out.recommendations.append(
        flag_recommendation(
            x,
            name,
            "fp8",
            "set",
            f"{sentence(why)}: storing the cache in 8 bits holds twice the tokens in the "
            f"same memory{note}.",
            "Twice as many tokens fit in the KV cache, so preemptions mostly stop; attention "
            "reads FP8 values, which costs a little accuracy: evaluate on your own prompts.",
            "low",
            evidence,
        )
    )


def swap_space(x: Inputs, out: Outcome) -> None:
    """vLLM V0 only: `swap_space_bytes` on llm_engine_info is how a V0 engine shows itself."""
    fig = x.figures
    if x.engine != "vllm" or "swap_space_bytes" not in fig.info:
        return
    found = _kv_thrashing(x)
    current = known(x, "--swap-space")
    if found is None or not isinstance(current, int | float) or current >= SWAP_CAP_GIB:
        return
    proposed = min(SWAP_CAP_GIB, max(4.0, current * 2))
    out.recommendations.append(
        flag_recommendation(
            x,
            "--swap-space",
            proposed,
            "raise",
            "A V0 engine is preempting with a full KV cache; V0 swaps preempted requests with "
            "several sequences (n > 1, beam search) to this CPU space instead of recomputing.",
            f"Up to {format_value(proposed)} GiB of preempted multi-sequence requests per GPU "
            "wait in CPU memory instead of being recomputed; it does nothing for single-sequence "
            "requests, which V0 recomputes, and V1 engines have no swap space.",
            "low",
            [fig.evidence_gauge("kv_cache_usage", "p95"), fig.evidence_counter("preemptions")],
        )
    )


def block_size(x: Inputs, out: Outcome) -> None:
    """Only with a stated reason: large blocks waste half a block per sequence."""
    fig = x.figures
    if x.engine != "vllm":
        return
    current = known(x, "--block-size")
    tokens = tokens_per_request(fig)
    if not isinstance(current, int | float) or current <= 16 or not tokens:
        return
    if _kv_thrashing(x) is None:
        return
    waste = (current / 2) / tokens
    if waste < BLOCK_WASTE:
        return
    out.recommendations.append(
        flag_recommendation(
            x,
            "--block-size",
            16,
            "lower",
            f"Each sequence leaves on average half a block ({current / 2:.0f} tokens) of its "
            f"last {current:.0f}-token block empty, {ratio_text(waste)} of a {tokens:.0f}-token "
            "request, while the saturated cache preempts.",
            f"About {ratio_text(waste - 8 / tokens)} more of the KV cache holds real tokens; 16 is "
            "vLLM's CUDA default (some attention backends need larger blocks: check yours).",
            "medium",
            [
                fig.evidence_counter("prompt_tokens"),
                fig.evidence_counter("generation_tokens"),
                fig.evidence_requests(),
            ],
        )
    )


def queue_with_room(x: Inputs, out: Outcome) -> None:
    """Requests wait while the KV cache is mostly empty and the batch is at its limit."""
    knobs = KNOBS.get(x.engine or "")
    fig = x.figures
    if knobs is None or knobs.max_seqs is None:
        return
    kv95 = fig.gauge("kv_cache_usage", "p95")
    waiting = fig.gauge("requests_waiting", "mean")
    running95 = fig.gauge("requests_running", "p95")
    running_max = fig.gauge("requests_running", "max")
    if kv95 is None or waiting is None or running95 is None or running_max is None:
        return
    if kv95 >= KV_MOSTLY_EMPTY or waiting < QUEUEING:
        return
    name = knobs.max_seqs
    current = known(x, name)
    inferred = False
    if isinstance(current, int | float):
        limit = float(current)
        at_limit = running95 >= BATCH_AT_LIMIT * limit
    else:
        # Unknown limit: a running batch that plateaus while requests wait is at its limit.
        limit = running_max
        inferred = True
        at_limit = running_max >= 4 and running95 >= 0.98 * running_max
    if not at_limit:
        out.notes.append(
            f"Requests wait (mean {waiting:.1f} per pod) while the KV cache is only "
            f"{ratio_text(kv95)} full and the batch ({running95:.0f} at p95) is below its limit: "
            f"the per-step token budget ({knobs.prefill_budget}) or the scheduler admits them "
            "slowly."
        )
        return
    factor = min(4.0, KV_GROWTH_TARGET / max(kv95, 0.05))
    proposed = min(int(limit * 4), max(int(limit) + 8, round_up(limit * factor, 8)))
    evidence = [
        fig.evidence_gauge("kv_cache_usage", "p95"),
        fig.evidence_gauge("requests_waiting", "mean"),
        fig.evidence_gauge("requests_running", "p95"),
    ]
    rec = flag_recommendation(
        x,
        name,
        proposed,
        "raise",
        f"Requests queue (mean {waiting:.1f} per pod) while the running batch sits at its limit "
        f"of {limit:.0f} and the KV cache is only {ratio_text(kv95)} full: the cache has room "
        "for more sequences.",
        f"Up to {proposed} sequences run at once, filling the KV cache to about "
        f"{min(1.0, kv95 * proposed / limit):.0%}: the queue drains and TTFT falls; each "
        "decode step carries more sequences, so time per output token rises somewhat.",
        "medium" if inferred else "high",
        evidence,
    )
    if inferred:
        rec.current = int(limit)
        rec.current_source = "inferred"
        rec.details["inferred_from"] = "the running batch's plateau (its maximum over the window)"
    out.recommendations.append(rec)


def prefill_budget(x: Inputs, out: Outcome) -> None:
    """TTFT against TPOT: the per-step token budget decides which one long prompts hurt."""
    knobs = KNOBS.get(x.engine or "")
    fig = x.figures
    if knobs is None or knobs.prefill_budget is None:
        return
    ttft = objective_for(x, "ttft")
    token = objective_for(x, "tpot") or objective_for(x, "itl")
    prompt = fig.per_request("prompt_tokens")
    if ttft is None or token is None or prompt is None or prompt < LONG_PROMPT_TOKENS:
        return
    ttft_q, token_q = observed(fig, ttft), observed(fig, token)
    if ttft_q is None or token_q is None:
        return
    name = knobs.prefill_budget
    current = known(x, name)
    evidence = [
        fig.evidence_quantile("ttft", ttft.quantile),
        fig.evidence_quantile(token.histogram, token.quantile),
        fig.evidence_counter("prompt_tokens"),
        fig.evidence_requests(),
    ]
    if ttft_q > ttft.threshold and token_q <= HEADROOM * token.threshold:
        if isinstance(current, int | float):
            proposed = min(BATCH_BUDGET_CAP, pow2_at_least(max(2 * current, prompt)))
            if proposed <= current:
                return
        else:
            proposed = max(DEFAULT_BATCH_BUDGET, pow2_at_least(prompt))
        out.recommendations.append(
            flag_recommendation(
                x,
                name,
                proposed,
                "raise",
                f"TTFT p{pct(ttft.quantile)} is {ttft_q:.2f} s against "
                f"{format_value(ttft.threshold)} s "
                f"while {token.histogram.upper()} p{pct(token.quantile)} has room "
                f"({token_q:.3f} s of {format_value(token.threshold)} s) and prompts average "
                f"{prompt:,.0f} tokens: prefills are split over too many steps.",
                "Long prompts prefill in fewer, larger steps, so TTFT falls; the trade-off: "
                "every step that carries a prefill chunk takes longer, so inter-token latency "
                "rises for the requests decoding beside it.",
                "medium" if isinstance(current, int | float) else "low",
                evidence,
            )
        )
    elif token_q > token.threshold and ttft_q <= HEADROOM * ttft.threshold:
        if not isinstance(current, int | float) or current <= BATCH_BUDGET_FLOOR:
            return
        proposed = max(BATCH_BUDGET_FLOOR, int(current) // 2)
        out.recommendations.append(
            flag_recommendation(
                x,
                name,
                proposed,
                "lower",
                f"{token.histogram.upper()} p{pct(token.quantile)} is {token_q:.3f} s against "
                f"{format_value(token.threshold)} s while TTFT has room ({ttft_q:.2f} s of "
                f"{format_value(ttft.threshold)} s) and prompts average {prompt:,.0f} tokens: "
                "large prefill chunks stall the decodes running beside them.",
                "Smaller prefill chunks keep each step short, so inter-token latency falls; the "
                "trade-off: long prompts take more steps to prefill, so TTFT rises.",
                "medium",
                evidence,
            )
        )


# ---- TGI -------------------------------------------------------------------------------


def tgi_concurrency(x: Inputs, out: Outcome) -> None:
    fig = x.figures
    if x.engine != "tgi":
        return
    current = known(x, "--max-concurrent-requests")
    reasons = ("error",)
    errors = fig.error_ratio(reasons)
    running, waiting = fig.gauge("requests_running", "max"), fig.gauge("requests_waiting", "max")
    if not isinstance(current, int | float) or errors is None or running is None:
        return
    in_flight = running + (waiting or 0.0)
    if errors < ERROR_SHARE or in_flight < BATCH_AT_LIMIT * current:
        return
    latency_ok = all(met(fig, o) is not False for o in x.latency)
    if not latency_ok:
        out.notes.append(
            f"TGI refuses requests at its {current:.0f}-request limit while latency misses its "
            "target: more replicas, not a higher limit."
        )
        return
    out.recommendations.append(
        flag_recommendation(
            x,
            "--max-concurrent-requests",
            int(current * 2),
            "raise",
            f"{ratio_text(errors)} of requests fail while up to {in_flight:.0f} are in flight "
            f"against a limit of {current:.0f}, and latency meets its targets: the router "
            "refuses requests the engine could serve.",
            "Fewer requests are refused as overloaded; more of them queue, so watch the queue "
            "time after the change.",
            "medium",
            [
                fig.evidence_requests(),
                fig.evidence_gauge("requests_running", "max"),
                fig.evidence_gauge("requests_waiting", "max"),
            ],
        )
    )


def tgi_waiting_tokens(x: Inputs, out: Outcome) -> None:
    fig = x.figures
    if x.engine != "tgi":
        return
    current = known(x, "--max-waiting-tokens")
    token = objective_for(x, "tpot") or objective_for(x, "itl")
    queue95 = fig.quantile("queue", 0.95)
    waiting = fig.gauge("requests_waiting", "mean")
    if not isinstance(current, int | float) or token is None or queue95 is None:
        return
    if (fig.observations("queue") or 0) < MIN_REQUESTS:
        return
    token_q = observed(fig, token)
    if token_q is None:
        return
    evidence = [
        fig.evidence_quantile("queue", 0.95),
        fig.evidence_quantile(token.histogram, token.quantile),
    ]
    if (
        queue95 >= TGI_SLOW_QUEUE_SECONDS
        and token_q <= HEADROOM * token.threshold
        and (waiting or 0) >= QUEUEING
    ):
        if current <= 1:
            return
        proposed = max(1, int(current) // 2)
        out.recommendations.append(
            flag_recommendation(
                x,
                "--max-waiting-tokens",
                proposed,
                "lower",
                f"Requests wait {queue95:.2f} s at p95 while time per output token has room "
                f"({token_q:.3f} s of {format_value(token.threshold)} s): waiting requests join "
                "the running batch too rarely.",
                "Queued requests are prefilled after fewer decode steps, so queue time falls; "
                "the trade-off: the running requests pause for those prefills more often, so "
                "inter-token latency rises.",
                "medium",
                evidence,
            )
        )
    elif token_q > token.threshold and queue95 < 0.1 * TGI_SLOW_QUEUE_SECONDS:
        proposed = int(current) * 2
        out.recommendations.append(
            flag_recommendation(
                x,
                "--max-waiting-tokens",
                proposed,
                "raise",
                f"Time per output token misses its target ({token_q:.3f} s of "
                f"{format_value(token.threshold)} s) while requests hardly wait "
                f"({queue95:.3f} s at p95): prefills interrupt the decodes too often.",
                "Decodes run longer between prefills, so inter-token latency falls; the "
                "trade-off: queued requests wait more steps, so queue time rises.",
                "medium",
                evidence,
            )
        )


def tgi_batch_tokens(x: Inputs, out: Outcome) -> None:
    fig = x.figures
    if x.engine != "tgi":
        return
    current = known(x, "--max-batch-total-tokens")
    tokens = tokens_per_request(fig)
    running95 = fig.gauge("requests_running", "p95")
    waiting = fig.gauge("requests_waiting", "mean")
    if not isinstance(current, int | float) or not tokens or running95 is None:
        return
    need = running95 * tokens
    if need < BATCH_AT_LIMIT * current or (waiting or 0) < QUEUEING:
        return
    free_bytes = fig.gauge("gpu_memory_free_bytes", "min")
    per_token = kv_bytes_per_token(fig)
    if free_bytes is None or per_token is None:
        out.missing.append(
            "TGI's batch is bound by --max-batch-total-tokens, but "
            + (
                "GPU memory is not reported"
                if free_bytes is None
                else "the model's KV size is not known"
            )
            + ": cannot tell how far it can go up"
        )
        return
    extra = int(free_bytes * (1 - MEMORY_MARGIN) * 0.9 // per_token)
    if extra < 0.1 * current:
        return
    proposed = round_up(current + extra, 256)
    out.recommendations.append(
        flag_recommendation(
            x,
            "--max-batch-total-tokens",
            proposed,
            "raise",
            f"Requests queue while the running batch needs about {need:,.0f} tokens "
            f"({running95:.0f} requests of {tokens:,.0f} tokens) against a cap of "
            f"{current:,.0f}, and the GPU keeps {gib(free_bytes)} free.",
            f"About {extra:,} more tokens of KV cache: more requests batch together and the "
            "queue drains.",
            "medium",
            [
                fig.evidence_gauge("requests_running", "p95"),
                fig.evidence_gauge("gpu_memory_free_bytes", "min"),
                fig.evidence_counter("prompt_tokens"),
                fig.evidence_counter("generation_tokens"),
            ],
        )
    )
