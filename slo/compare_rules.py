"""How each SLI of the comparison is judged, shared by all of them: the three outcomes of a
test with its confidence bound (`judge`), the minimum data (`too_few`), the test on per-step
blocks of the request-based SLIs (`blocks_test`), the result's assembly, and the wording.

Each SLI is `fail` when its one-sided test is significant *and* the difference is beyond the
user's threshold; `pass` when the upper confidence bound of the difference is under the
threshold (the data shows the candidate is at most that much worse); `insufficient`
otherwise, or when a variant has fewer than `min_requests` requests or `min_steps` steps;
`not-judged` without a threshold or without the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from inferwatch.slo import compare_queries as cq
from inferwatch.slo import compare_stats as st
from inferwatch.slo.compare_models import (
    SLIS,
    Role,
    SLIResult,
    Status,
    Thresholds,
    Variant,
    Window,
)
from inferwatch.slo.figures import Evidence


@dataclass
class Judged:
    """An SLI's status, why, and for `insufficient` how many times the data it needs."""

    status: Status
    reason: str
    factor: float | None = None
    tested: bool = False  # decided by the test and the bound (not by too little data)


def judge(
    bound: st.Bound,
    test: st.TestResult,
    alpha: float,
    tolerance: float,
    describe: Callable[[float], str],
) -> Judged:
    """The three outcomes of an SLI with enough data (see the module docstring)."""
    worse = describe(bound.difference)
    if test.p_value < alpha and bound.difference > tolerance:
        return Judged(
            "fail", f"{worse}, beyond the threshold, significant ({_p(test)})", tested=True
        )
    if bound.upper < tolerance:
        upper = describe(bound.upper)
        return Judged(
            "pass", f"{worse}; at worst {upper} ({_confidence(alpha)} bound)", tested=True
        )
    if bound.difference < tolerance:
        factor = bound.scale_to_pass(tolerance)
        why = f"{worse}, but it could be up to {describe(bound.upper)}"
    else:
        factor = bound.scale_to_significance()
        why = f"{worse}, beyond the threshold but not significant ({_p(test)})"
    return Judged("insufficient", why, factor, tested=True)


def _p(test: st.TestResult) -> str:
    return f"p={test.p_value:.2g}" if test.p_value >= 1e-12 else "p<1e-12"


def _confidence(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.3g}%"


def too_few(n1: float | None, n2: float | None, minimum: float, what: str) -> Judged | None:
    """`insufficient` when a variant has fewer than `minimum` requests (or steps), else None."""
    short = [
        (role, n) for role, n in (("baseline", n1 or 0.0), ("candidate", n2 or 0.0)) if n < minimum
    ]
    if not short:
        return None
    text = " and ".join(f"the {role} has {n:.0f}" for role, n in short)
    factor = max(minimum / n if n > 0 else math.inf for _who, n in short)
    return Judged("insufficient", f"{text} {what}, fewer than the {minimum:g} needed", factor)


@dataclass
class Context:
    """One comparison: the variants, the thresholds, the window, the significance per SLI."""

    baseline: Variant
    candidate: Variant
    th: Thresholds
    window: Window
    alpha: float  # per SLI

    def variants(self) -> tuple[tuple[Role, Variant], ...]:
        return (("baseline", self.baseline), ("candidate", self.candidate))

    def evidence(
        self,
        what: str,
        expr: Callable[[Variant], str],
        value: Callable[[Variant], float | None],
        unit: str,
    ) -> list[Evidence]:
        """Each variant's figure: the PromQL that reads it at the comparison's time, the value."""
        w = self.window.window
        return [
            Evidence(name=f"{role} {what} over {w}", promql=expr(v), value=value(v), unit=unit)
            for role, v in self.variants()
        ]

    def summed(
        self,
        what: str,
        expr: Callable[[Variant], str],
        value: Callable[[Variant], float | None],
        unit: str,
    ) -> list[Evidence]:
        """Evidence of a figure the tests read per step (`expr` over one step), summed."""
        w, res = self.window.window, self.window.resolution
        return self.evidence(
            f"{what}, per {res} step, summed",
            lambda v: cq.over_steps("sum", expr(v), w, res),
            value,
            unit,
        )


def role_of(ctx: Context, v: Variant) -> Role:
    return "baseline" if v is ctx.baseline else "candidate"


def result(
    sli: str,
    figure: str,
    unit: str,
    baseline: float | None,
    candidate: float | None,
    worse_when: Literal["higher", "lower"],
    threshold: float | None,
    threshold_text: str,
    observations: Mapping[str, float | None],
    judged: Judged,
    test: st.TestResult | None = None,
    alpha: float | None = None,
    **extra: object,
) -> SLIResult:
    difference = None if baseline is None or candidate is None else candidate - baseline
    relative = difference / baseline if difference is not None and baseline else None
    return SLIResult(
        sli=sli,
        title=SLIS[sli],
        figure=figure,
        unit=unit,
        baseline=baseline,
        candidate=candidate,
        difference=difference,
        relative_difference=relative,
        worse_when=worse_when,
        test=test.name if test else None,
        test_statistic=_finite(test.statistic) if test else None,
        p_value=test.p_value if test else None,
        significance=alpha if test else None,
        threshold=threshold,
        threshold_text=threshold_text,
        status=judged.status,
        reason=judged.reason,
        observations=dict(observations),
        # inf (no amount of data settles it) is left out: JSON has no infinity.
        needed_factor=judged.factor
        if judged.status == "insufficient"
        and judged.factor is not None
        and math.isfinite(judged.factor)
        else None,
        **extra,  # type: ignore[arg-type]
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


@dataclass
class Blocks:
    """A request-based SLI's test on per-step blocks: the ratios, the test, the judgement."""

    r1: st.Ratio | None
    r2: st.Ratio | None
    test: st.TestResult | None = None
    judged: Judged | None = None


def blocks_test(
    ctx: Context,
    blocks: tuple[list[tuple[float, float]], list[tuple[float, float]]],
    requests: tuple[float, float],
    floor: Callable[[float, float], float],
    tolerance: float | None,
    name: str,
    describe: Callable[[float], str],
) -> Blocks:
    """Judge `x/n` of the candidate against the baseline's from per-step `(x, n)` blocks, once
    each variant has `min_requests` requests and `min_steps` steps."""
    th = ctx.th
    r1, r2 = st.ratio(blocks[0]), st.ratio(blocks[1])
    out = Blocks(r1, r2)
    bound = None
    if r1 is not None and r2 is not None:
        out.test, bound = st.compare_ratios(
            r1, r2, floor(r1.x, r1.n), floor(r2.x, r2.n), ctx.alpha, name
        )
    out.judged = too_few(*requests, th.min_requests, "requests") or too_few(
        len(blocks[0]), len(blocks[1]), th.min_steps, "steps with data"
    )
    if out.judged is None and (r1 is None or r2 is None or out.test is None):
        out.judged = Judged("insufficient", "no requests in the steps of a variant", math.inf)
    if out.judged is None and tolerance is None:
        out.judged = Judged("not-judged", "no threshold set")
    if out.judged is None and out.test is not None and bound is not None and tolerance is not None:
        out.judged = judge(bound, out.test, ctx.alpha, tolerance, describe)
    return out


def ratio_part(out: Blocks, baseline: bool, part: str) -> float | None:
    r = out.r1 if baseline else out.r2
    return None if r is None else getattr(r, part)


# ---- text ------------------------------------------------------------------------------------


def minutes_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def percent_name(q: float) -> str:
    return f"{q * 100:.4f}".rstrip("0").rstrip(".")


def points(d: float) -> str:
    """A difference of ratios in percentage points: `+1.2 points`."""
    return f"{d * 100:+.2g} points"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def percent_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2%}"


def seconds_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} s"


def relative_text(before: float | None, after: float | None) -> str:
    if before is None or after is None or before == 0:
        return "n/a"
    return f"{(after - before) / before:+.1%}"
