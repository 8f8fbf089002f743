"""The SLIs besides latency: error ratio and preemptions (counts per request, tested on
per-step blocks), KV-cache usage and generated tokens/s per GPU (gauges and rates per step,
Welch's t-test on the steps)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from inferwatch import schema
from inferwatch.slo import compare_queries as cq
from inferwatch.slo import compare_stats as st
from inferwatch.slo.compare_models import SLIResult, Variant
from inferwatch.slo.compare_rules import (
    Context,
    Judged,
    blocks_test,
    judge,
    number,
    percent_text,
    points,
    ratio_part,
    result,
    role_of,
    too_few,
)
from inferwatch.slo.figures import Stat


def _error_blocks(v: Variant, reasons: Sequence[str]) -> list[tuple[float, float]]:
    return [
        (math.fsum(c for r, c in by_reason.items() if r in reasons), math.fsum(by_reason.values()))
        for _t, by_reason in sorted(v.step_finished.items())
    ]


def error_ratio(ctx: Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.error_ratio_max_increase
    reasons = schema.ERROR_REASONS
    threshold_text = f"at most {points(tolerance)} higher" if tolerance is not None else "none set"
    n1, n2 = ctx.baseline.requests, ctx.candidate.requests
    observations = {"baseline": n1, "candidate": n2}
    if n1 is None or n2 is None:
        judged = Judged("not-judged", "no llm_requests_finished_total of a variant in the window")
        return result(
            "error_ratio", "ratio", "ratio", None, None, "higher", tolerance, threshold_text,
            observations, judged,
        )  # fmt: skip
    errors = {role: v.errors(reasons) for role, v in ctx.variants()}
    p1 = errors["baseline"] / n1 if n1 > 0 else None
    p2 = errors["candidate"] / n2 if n2 > 0 else None
    blocks = (_error_blocks(ctx.baseline, reasons), _error_blocks(ctx.candidate, reasons))
    out = blocks_test(
        ctx, blocks, (n1, n2), st.binomial_floor, tolerance,
        f"t-test on the share of requests finished as {' or '.join(reasons)} (standard errors "
        f"from {res} steps)",
        points,
    )  # fmt: skip
    judged = out.judged
    assert judged is not None
    judged.reason = f"{percent_text(p1)} -> {percent_text(p2)}: {judged.reason}"
    evidence = [
        *ctx.evidence(
            "requests finished",
            lambda v: cq.requests_total(w, v.ref.matchers()),
            lambda v: v.requests,
            "requests",
        ),
        *ctx.evidence(
            f"requests finished as {' or '.join(reasons)}",
            lambda v: cq.requests_total(w, v.ref.matchers(), reasons),
            lambda v: v.errors(reasons),
            "requests",
        ),
        *ctx.summed(
            "requests finished",
            lambda v: cq.requests_total(res, v.ref.matchers()),
            lambda v: ratio_part(out, v is ctx.baseline, "n"),
            "requests",
        ),
        *ctx.summed(
            f"requests finished as {' or '.join(reasons)}",
            lambda v: cq.requests_total(res, v.ref.matchers(), reasons),
            lambda v: ratio_part(out, v is ctx.baseline, "x"),
            "requests",
        ),
    ]
    return result(
        "error_ratio", "ratio", "ratio", p1, p2, "higher", tolerance, threshold_text,
        observations, judged, out.test, ctx.alpha, evidence=evidence,
        details={"reasons": ", ".join(reasons)},
    )  # fmt: skip


def _preemption_blocks(v: Variant) -> list[tuple[float, float]]:
    counts = v.steps.get("preemptions", {})
    return [
        (counts[t], math.fsum(by_reason.values()))
        for t, by_reason in sorted(v.step_finished.items())
        if t in counts
    ]


def preemptions(ctx: Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.preemptions_max_increase
    threshold_text = (
        f"at most {tolerance:g} more per request" if tolerance is not None else "none set"
    )
    k1 = ctx.baseline.counters.get("preemptions")
    k2 = ctx.candidate.counters.get("preemptions")
    n1, n2 = ctx.baseline.requests, ctx.candidate.requests
    observations = {"baseline": n1, "candidate": n2}
    if k1 is None or k2 is None or n1 is None or n2 is None:
        missing = [
            e for role, v in ctx.variants() if "preemptions" not in v.counters
            for e in (v.engines or (role,))
        ]  # fmt: skip
        why = f"llm_preemptions_total is not reported by {', '.join(missing) or 'a variant'}"
        return result(
            "preemptions", "per request", "preemptions", None, None, "higher", tolerance,
            threshold_text, observations, Judged("not-judged", why),
        )  # fmt: skip
    r1 = k1 / n1 if n1 > 0 else None
    r2 = k2 / n2 if n2 > 0 else None
    blocks = (_preemption_blocks(ctx.baseline), _preemption_blocks(ctx.candidate))
    out = blocks_test(
        ctx, blocks, (n1, n2), st.poisson_floor, tolerance,
        f"t-test on preemptions per request (standard errors from {res} steps)",
        lambda d: f"{d:+.3g} per request",
    )  # fmt: skip
    judged = out.judged
    assert judged is not None
    judged.reason = f"{number(r1)} -> {number(r2)} per request: {judged.reason}"
    evidence = [
        *ctx.evidence(
            "preemptions",
            lambda v: cq.counter("preemptions", w, (), v.ref.matchers()),
            lambda v: v.counters.get("preemptions"),
            "preemptions",
        ),
        *ctx.summed(
            "preemptions",
            lambda v: cq.counter("preemptions", res, (), v.ref.matchers()),
            lambda v: ratio_part(out, v is ctx.baseline, "x"),
            "preemptions",
        ),
    ]
    return result(
        "preemptions", "per request", "preemptions", r1, r2, "higher", tolerance,
        threshold_text, observations, judged, out.test, ctx.alpha, evidence=evidence,
        details={"baseline_preemptions": k1, "candidate_preemptions": k2},
    )  # fmt: skip


# ---- per step: KV cache and throughput ----------------------------------------------------------


def kv_cache(ctx: Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.kv_cache_max_increase
    threshold_text = (
        f"mean at most {points(tolerance)} higher" if tolerance is not None else "none set"
    )
    values = {role: list(v.steps.get("kv", {}).values()) for role, v in ctx.variants()}
    stats = {role: Stat.of(vs) for role, vs in values.items()}
    s1, s2 = stats["baseline"], stats["candidate"]
    observations = {role: float(len(vs)) for role, vs in values.items()}
    if s1 is None or s2 is None:
        judged = Judged("not-judged", "no llm_kv_cache_usage_ratio of a variant in the window")
        return result(
            "kv_cache", "mean per step", "ratio", None, None, "higher", tolerance,
            threshold_text, observations, judged,
        )  # fmt: skip
    evidence = [
        *ctx.evidence(
            "KV-cache usage mean",
            lambda v: cq.over_steps("mean", cq.kv_cache((), v.ref.matchers()), w, res),
            lambda v: stats[role_of(ctx, v)].mean,  # type: ignore[union-attr]
            "ratio",
        ),
        *ctx.evidence(
            "KV-cache usage p95",
            lambda v: cq.over_steps("p95", cq.kv_cache((), v.ref.matchers()), w, res),
            lambda v: stats[role_of(ctx, v)].p95,  # type: ignore[union-attr]
            "ratio",
        ),
    ]
    details: dict[str, float | str | None] = {
        "baseline_p95": s1.p95,
        "candidate_p95": s2.p95,
        "resolution": res,
    }
    test, judged = _steps_test(values["baseline"], values["candidate"], ctx, lower=False)
    if judged is None and tolerance is None:
        judged = Judged("not-judged", "no threshold set")
    if judged is None and test is not None and tolerance is not None:
        bound = _steps_bound(values["baseline"], values["candidate"], ctx.alpha, lower=False)
        judged = judge(bound, test, ctx.alpha, tolerance, lambda d: f"{points(d)}")
        judged.reason = f"mean {s1.mean:.1%} -> {s2.mean:.1%}: {judged.reason}"
    assert judged is not None
    return result(
        "kv_cache", "mean per step", "ratio", s1.mean, s2.mean, "higher", tolerance,
        threshold_text, observations, judged, test, ctx.alpha, details=details,
        evidence=evidence,
    )  # fmt: skip


def _steps_test(
    v1: list[float], v2: list[float], ctx: Context, lower: bool
) -> tuple[st.TestResult | None, Judged | None]:
    short = too_few(len(v1), len(v2), ctx.th.min_steps, "steps with data")
    if len(v1) < 2 or len(v2) < 2:
        return None, short
    sign = -1.0 if lower else 1.0
    m1, var1 = _mean_var([sign * x for x in v1])
    m2, var2 = _mean_var([sign * x for x in v2])
    return st.welch(m1, var1, len(v1), m2, var2, len(v2)), short


def _steps_bound(v1: list[float], v2: list[float], alpha: float, lower: bool) -> st.Bound:
    sign = -1.0 if lower else 1.0
    m1, var1 = _mean_var([sign * x for x in v1])
    m2, var2 = _mean_var([sign * x for x in v2])
    return st.means_bound(m1, var1, len(v1), m2, var2, len(v2), alpha)


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((x - mean) ** 2 for x in values) / (len(values) - 1)


def _per_unit(v: Variant, per: str) -> dict[float, float]:
    divisor = v.steps.get("gpus" if per == "GPU" else "pods", {})
    rates = v.steps.get("rate", {})
    return {t: r / divisor[t] for t, r in rates.items() if divisor.get(t, 0) > 0}


def tokens_per_gpu(ctx: Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.throughput_max_drop
    threshold_text = f"mean at most {tolerance:.0%} lower" if tolerance is not None else "none set"
    with_gpus = all(v.steps.get("gpus") for _who, v in ctx.variants())
    per = "GPU" if with_gpus else "pod"
    notes = [] if with_gpus else ["no GPU series for a variant (dcgm-exporter): per pod instead"]
    values = {role: list(_per_unit(v, per).values()) for role, v in ctx.variants()}
    stats = {role: Stat.of(vs) for role, vs in values.items()}
    s1, s2 = stats["baseline"], stats["candidate"]
    observations = {role: float(len(vs)) for role, vs in values.items()}
    figure = f"mean per step, per {per}"
    if s1 is None or s2 is None:
        judged = Judged("not-judged", "no llm_generation_tokens_total of a variant in the window")
        return result(
            "tokens_per_gpu", figure, "tokens/s", None, None, "lower", tolerance,
            threshold_text, observations, judged, notes=notes,
        )  # fmt: skip
    evidence = ctx.evidence(
        f"generated tokens/s per {per}, mean",
        lambda v: cq.over_steps("mean", cq.per_unit_rate(res, v.ref.matchers(), per), w, res),
        lambda v: stats[role_of(ctx, v)].mean,  # type: ignore[union-attr]
        "tokens/s",
    )
    test, judged = _steps_test(values["baseline"], values["candidate"], ctx, lower=True)
    if judged is None and tolerance is None:
        judged = Judged("not-judged", "no threshold set: throughput follows each one's traffic")
    if judged is None and test is not None and tolerance is not None:
        bound = _steps_bound(values["baseline"], values["candidate"], ctx.alpha, lower=True)
        allowed = tolerance * s1.mean
        judged = judge(bound, test, ctx.alpha, allowed, lambda d: f"{-d:+.4g} tokens/s")
        judged.reason = f"mean {s1.mean:.4g} -> {s2.mean:.4g} tokens/s per {per}: {judged.reason}"
    assert judged is not None
    return result(
        "tokens_per_gpu", figure, "tokens/s", s1.mean, s2.mean, "lower", tolerance,
        threshold_text, observations, judged, test, ctx.alpha, evidence=evidence, notes=notes,
        details={"per": per, "resolution": res},
    )  # fmt: skip
