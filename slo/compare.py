"""The canary comparison: two deployments' window figures in, a verdict with its evidence out.

`compare(baseline, candidate, thresholds, window)` is pure: the figures (`Variant`) are read
from Prometheus by `compare_prometheus`, and everything here is arithmetic on them. One entry
per SLI, each judged against the user's threshold with a one-sided test (is the candidate
worse?), its significance the user's split evenly over the judged SLIs (Bonferroni), so that
equal variants are rolled back with a chance of at most `significance` whatever their number:

- `ttft`, `tpot`, `e2e` (`compare_latency`): the quantile (p95) from the bucket increases; the
  test on the share of requests above the boundary next to the baseline's quantile;
- `error_ratio`, `preemptions` (`compare_slis`): errors, and preemptions, per finished request;
- `kv_cache`, `tokens_per_gpu` (`compare_slis`): the fullest pod's KV-cache usage and the
  generated tokens/s per GPU (per pod without GPU series), mean over steps.

The request-based tests take their standard errors from per-step blocks, so that bursts (a
queue building up, a preemption storm) are not counted as independent evidence. How each SLI
is judged is in `compare_rules`; the statistics in `compare_stats`; the reasons for them in
docs/compare.md. The verdict: `rollback` if any SLI fails, else `hold` if any is insufficient
(with how much more data it needs), else `promote`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from inferwatch.slo.compare_latency import latency
from inferwatch.slo.compare_models import (
    LATENCY,
    Comparison,
    Needed,
    SLIResult,
    Thresholds,
    Variant,
    VariantSummary,
    Verdict,
    Window,
    duration_text,
)
from inferwatch.slo.compare_rules import Context, minutes_text
from inferwatch.slo.compare_slis import error_ratio, kv_cache, preemptions, tokens_per_gpu


def _judged_count(baseline: Variant, candidate: Variant, th: Thresholds) -> int:
    """How many SLIs have a threshold and figures of both variants: the significance is split
    over them (an SLI found unjudgeable later keeps its share, which only makes it stricter)."""
    both = (baseline, candidate)
    count = sum(
        1
        for key in LATENCY
        if getattr(th, f"{key}_max_regression") is not None
        and all(v.histograms.get(key) for v in both)
    )
    count += th.error_ratio_max_increase is not None and all(v.finished for v in both)
    count += th.preemptions_max_increase is not None and all(
        "preemptions" in v.counters and v.finished for v in both
    )
    count += th.kv_cache_max_increase is not None and all(v.steps.get("kv") for v in both)
    count += th.throughput_max_drop is not None and all(v.steps.get("rate") for v in both)
    return max(1, count)


def compare(baseline: Variant, candidate: Variant, th: Thresholds, window: Window) -> Comparison:
    """Judge the candidate against the baseline, SLI by SLI, and give the verdict."""
    alpha = th.significance / _judged_count(baseline, candidate, th)
    ctx = Context(baseline, candidate, th, window, alpha)
    results = [latency(key, ctx) for key in LATENCY]
    results += [error_ratio(ctx), tokens_per_gpu(ctx), kv_cache(ctx), preemptions(ctx)]
    slis = {r.sli: r for r in results}
    failed = [r for r in results if r.status == "fail"]
    short = [r for r in results if r.status == "insufficient"]
    judged = [r for r in results if r.status != "not-judged"]
    needed = None
    if failed:
        verdict: Verdict = "rollback"
        summary = "Roll back: " + "; ".join(f"{r.title}: {r.reason}" for r in failed)
    elif short or not judged:
        verdict = "hold"
        needed = _needed(short, baseline, candidate, window)
        what = ", ".join(r.title for r in short) or "no SLI could be judged"
        summary = f"Hold: not enough data to judge {what}. {needed.reason}"
    else:
        verdict = "promote"
        summary = (
            "Promote: no SLI is worse beyond its threshold ("
            + ", ".join(r.title for r in judged)
            + ")."
        )
    notes = []
    engines = {role: v.engines for role, v in ctx.variants()}
    if engines["baseline"] != engines["candidate"]:
        notes.append(
            f"the variants run different engines (baseline: {', '.join(engines['baseline'])}; "
            f"candidate: {', '.join(engines['candidate'])}): latency histograms are compared "
            "on the boundaries they share"
        )
    return Comparison(
        verdict=verdict,
        summary=summary,
        baseline=_summary(baseline, window),
        candidate=_summary(candidate, window),
        window=window.window,
        resolution=window.resolution,
        at=window.at,
        slis=slis,
        needed=needed,
        thresholds=th,
        notes=notes,
    )


def _summary(v: Variant, window: Window) -> VariantSummary:
    span = window.span(v)
    requests = v.requests
    return VariantSummary(
        namespace=v.ref.namespace,
        deployment=v.ref.deployment,
        engines=list(v.engines),
        models=list(v.models),
        requests=requests,
        request_rate=requests / span if requests is not None and span > 0 else None,
        span_seconds=span,
    )


def _needed(
    short: Sequence[SLIResult], baseline: Variant, candidate: Variant, window: Window
) -> Needed:
    """The most any insufficient SLI needs, as requests and time at the current rates: every
    figure's data grows in proportion to time, so `factor` times the data takes
    `(factor - 1)` times the candidate's serving time in the window."""
    factors = [math.inf if r.needed_factor is None else r.needed_factor for r in short]
    factor = max(factors, default=math.inf)
    n1, n2 = baseline.requests or 0.0, candidate.requests or 0.0
    if not n2:
        return Needed(
            factor=None,
            candidate_requests=None,
            seconds=None,
            window=None,
            reason="The candidate finished no requests in the window: is traffic reaching it?",
        )
    if not n1:
        return Needed(
            factor=None,
            candidate_requests=None,
            seconds=None,
            window=None,
            reason="The baseline finished no requests in the window: is traffic reaching it?",
        )
    if math.isinf(factor):
        return Needed(
            factor=None,
            candidate_requests=None,
            seconds=None,
            window=None,
            reason="More data would not settle it at these thresholds (a tolerance of 0, or "
            "a variant without requests in its steps): relax the threshold or compare by hand.",
        )
    more_cand = math.ceil((factor - 1) * n2)
    span = window.span(candidate)
    seconds = (factor - 1) * span
    rate = n2 / span
    wanted = duration_text(max(float(window.seconds), span + seconds))
    return Needed(
        factor=factor,
        candidate_requests=more_cand,
        seconds=seconds,
        window=wanted,
        reason=(
            f"About {factor:.3g} times the data: {more_cand} more candidate requests, about "
            f"{minutes_text(seconds)} at its current {rate:.3g} requests/s; compare again then "
            f"over a window of {wanted}."
        ),
    )
