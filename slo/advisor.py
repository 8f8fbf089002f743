"""The tuning advisor: pure functions from a window of figures to recommendations.

`advise(inputs)` runs every rule over one deployment's `Figures` (see `figures.py`), its
current engine flags (`flags.read_flags`) and its objectives (`objectives.py`), and returns an
`Advice`: healthy, recommendations, objectives missed without a cause the rules can see, or not
enough data (saying what is missing). The rules read only their inputs, never Prometheus, so
the same rules run on figures sampled straight from an engine's `/metrics`.

The rules (`rules_engine.py`, `rules_hpa.py`):

- KV cache saturated with preemptions: raise the memory share (`--gpu-memory-utilization`,
  SGLang `--mem-fraction-static`) when the GPU has memory free, up to 0.95; otherwise lower
  the batch limit (`--max-num-seqs`, `--max-running-requests`) and consider an FP8 KV cache.
  On V0 vLLM, more `--swap-space`; with large blocks and short requests, `--block-size 16`.
- KV cache mostly empty while requests queue at the batch limit: raise the batch limit.
- TTFT missing its target while TPOT has headroom and prompts are long: raise the prefill
  token budget (`--max-num-batched-tokens`, `--chunked-prefill-size`); the reverse when TPOT
  suffers. Each says the trade-off.
- TGI: `--max-concurrent-requests` when the router refuses requests it could serve,
  `--max-waiting-tokens` between queue time and inter-token latency, `--max-batch-total-tokens`
  when the estimated KV need meets the cap and memory is free.
- HPA (from Prometheus history): on a latency objective missed because requests queue, raise
  `maxReplicas` (and `replicas` now) from the per-replica throughput achieved within the
  objective; when every pod idles, lower `minReplicas`.
"""

from __future__ import annotations

from inferwatch.slo.figures import summary as figures_summary
from inferwatch.slo.flags import summary_source
from inferwatch.slo.models import Advice, FlagState, ObjectiveCheck, Status
from inferwatch.slo.rule_inputs import (
    MIN_POINTS,
    MIN_REQUESTS,
    Inputs,
    Outcome,
    observed,
    ratio_text,
    target_ref,
)
from inferwatch.slo.rules_engine import (
    block_size,
    kv_saturated,
    prefill_budget,
    queue_with_room,
    swap_space,
    tgi_batch_tokens,
    tgi_concurrency,
    tgi_waiting_tokens,
)
from inferwatch.slo.rules_hpa import hpa

RULES = (
    kv_saturated,
    swap_space,
    block_size,
    queue_with_room,
    prefill_budget,
    tgi_concurrency,
    tgi_waiting_tokens,
    tgi_batch_tokens,
    hpa,
)


def check_objectives(x: Inputs) -> list[ObjectiveCheck]:
    fig = x.figures
    checks = []
    for o in x.latency:
        if not fig.buckets.get(o.histogram):
            continue
        value = observed(fig, o)
        checks.append(
            ObjectiveCheck(
                name=o.name,
                sli=o.describe(),
                observed=value,
                met=None if value is None else value <= o.threshold,
            )
        )
    for a in x.availability:
        ratio = fig.error_ratio(a.reasons)
        enough = (fig.requests or 0) >= MIN_REQUESTS
        checks.append(
            ObjectiveCheck(
                name=a.name,
                sli=f"errors <= {ratio_text(1 - a.objective)}",
                observed=ratio,
                met=None if ratio is None or not enough else ratio <= 1 - a.objective,
            )
        )
    return checks


def _data_gaps(x: Inputs) -> list[str]:
    fig = x.figures
    gaps = []
    if fig.points < MIN_POINTS:
        gaps.append(
            f"only {fig.points} readings of the gauges in the {fig.window} window "
            f"(need at least {MIN_POINTS}): widen --window"
        )
    requests = fig.requests
    if requests is None:
        gaps.append("no finished-request counter (llm_requests_finished_total) in the window")
    elif requests < MIN_REQUESTS:
        gaps.append(
            f"only {requests:.0f} requests finished in the {fig.window} window (need at least "
            f"{MIN_REQUESTS} to judge latency): send traffic or widen --window"
        )
    return gaps


def advise(x: Inputs) -> Advice:
    """Run every rule over one deployment's figures."""
    fig = x.figures
    out = Outcome()
    gaps = _data_gaps(x)
    out.missing.extend(gaps)
    if not any("readings" in g for g in gaps):
        for rule in RULES:
            rule(x, out)
    if x.deployment_note:
        out.notes.append(x.deployment_note)
    objectives = check_objectives(x)
    missed = [c for c in objectives if c.met is False]
    unjudged = [c for c in objectives if c.met is None]
    for c in unjudged:
        out.missing.append(f"{c.name} ({c.sli}) could not be judged: too few observations")
    status: Status
    if out.recommendations:
        status = "recommendations"
        summary = f"{len(out.recommendations)} recommendation(s) from the last {fig.window}."
        if missed:
            summary += " Missing: " + ", ".join(_check_text(c) for c in missed) + "."
    elif out.missing:
        status = "insufficient-data"
        summary = "Not enough data to judge: " + "; ".join(out.missing) + "."
    elif missed:
        status = "needs-attention"
        summary = (
            "Objectives missed, but none of the advisor's rules finds the cause in the figures: "
            + ", ".join(_check_text(c) for c in missed)
            + ". See the notes and the alerts."
        )
    else:
        status = "healthy"
        met = ", ".join(_check_text(c) for c in objectives)
        summary = (
            f"Healthy and within its objectives over the last {fig.window} ({met}): "
            "nothing to change."
        )
    return Advice(
        target=target_ref(x),
        status=status,
        summary=summary,
        source=fig.source,
        window=fig.window,
        flags={
            k: FlagState(value=c.value, source=c.source, note=c.note) for k, c in x.flags.items()
        },
        flags_source=summary_source(x.flags.values()),
        objectives=objectives,
        recommendations=out.recommendations,
        missing=out.missing,
        notes=[*fig.notes, *out.notes],
        figures=figures_summary(fig),
    )


def _check_text(c: ObjectiveCheck) -> str:
    observed = "no data" if c.observed is None else f"{c.observed:.3g}"
    return f"{c.name}: {c.sli}, observed {observed}"
