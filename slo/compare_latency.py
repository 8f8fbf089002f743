"""The latency SLIs (TTFT, TPOT, end-to-end) from histogram bucket increases.

Both variants' buckets are read on the boundaries their layouts share (one engine's layout
against another's, when they differ). The figure shown is the quantile (`histogram_quantile`'s
interpolation); the test compares the share of requests above the boundary next to the
baseline's quantile (`tail_boundary`), per step, and the user's tolerance on the quantile
becomes a tolerance on that share: how much it would rise if the candidate were uniformly
that much slower than the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from inferwatch.slo import compare_queries as cq
from inferwatch.slo import compare_stats as st
from inferwatch.slo.compare_models import Layout, SLIResult
from inferwatch.slo.compare_rules import (
    Context,
    Judged,
    blocks_test,
    percent_name,
    points,
    ratio_part,
    relative_text,
    result,
    role_of,
    seconds_text,
)
from inferwatch.slo.figures import histogram_quantile


def common_bounds(layouts: Sequence[Layout]) -> list[float]:
    """The upper bounds every layout has (+Inf included), ascending."""
    shared = set(layouts[0])
    for layout in layouts[1:]:
        shared &= set(layout)
    return sorted(shared)


def cumulative(engines: Mapping[str, Layout], bounds: Sequence[float]) -> list[tuple[float, float]]:
    """(bound, cumulative count) on these bounds, summed over the variant's engines."""
    return [(le, math.fsum(layout[le][1] for layout in engines.values())) for le in bounds]


def share_above(buckets: Sequence[tuple[float, float]], value: float) -> float:
    """The share of observations above `value`, interpolating linearly within its bucket as
    `histogram_quantile` does (the first bucket starts at 0)."""
    total = buckets[-1][1]
    if total <= 0:
        return 0.0
    previous_le, previous = 0.0, 0.0
    for le, count in buckets:
        if math.isinf(le):
            break
        if value <= le:
            width = le - previous_le
            inside = (count - previous) * ((value - previous_le) / width if width > 0 else 1.0)
            return (total - previous - max(0.0, inside)) / total
        previous_le, previous = le, count
    return (total - previous) / total


def tail_boundary(
    buckets: Sequence[tuple[float, float]], finite: Sequence[float], q: float
) -> float:
    """The boundary whose share of slower requests the latency test compares: of the two
    boundaries around the baseline's q-quantile, the one whose share above is closest to
    1 - q (by ratio). A p95 low in a wide bucket is then tested at the bucket's lower boundary
    (say 8% above it), not at the upper one with a fraction of a percent above it, which
    barely moves and where the bucket's linear interpolation is least true. Chosen from the
    baseline alone, so the choice never depends on the candidate's data."""
    quantile = histogram_quantile(q, buckets)
    if quantile is None:
        return finite[-1]
    upper = next((i for i, b in enumerate(finite) if b >= quantile), len(finite) - 1)
    choices = [finite[i] for i in (upper - 1, upper) if 0 <= i < len(finite)]

    def distance(b: float) -> float:
        share = share_above(buckets, b)
        return abs(math.log(share / (1 - q))) if share > 0 else math.inf

    return min(choices, key=distance)


def tail_blocks(
    steps: Mapping[float, Mapping[str, Layout]], tail: float
) -> list[tuple[float, float]]:
    """Per step: (observations above `tail`, observations), summed over the engines; steps
    where an engine lacks either bucket are left out."""
    out = []
    for _t, engines in sorted(steps.items()):
        if not engines or any(tail not in lay or math.inf not in lay for lay in engines.values()):
            continue
        total = math.fsum(lay[math.inf][1] for lay in engines.values())
        under = math.fsum(lay[tail][1] for lay in engines.values())
        out.append((max(0.0, total - under), total))
    return out


def _le_texts(engines: Mapping[str, Layout], bound: float) -> list[str]:
    return sorted({layout[bound][0] for layout in engines.values() if bound in layout})


def latency(key: str, ctx: Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    q = th.latency_quantile
    figure = f"p{percent_name(q)}"
    tolerance: float | None = getattr(th, f"{key}_max_regression")
    threshold_text = (
        f"{figure} at most {tolerance:.0%} higher" if tolerance is not None else "none set"
    )
    hb, hc = ctx.baseline.histograms.get(key), ctx.candidate.histograms.get(key)
    family = cq.queries.HISTOGRAMS[key]
    nothing = {"baseline": None, "candidate": None}
    if not hb or not hc:
        missing = " and ".join(role for role, h in (("baseline", hb), ("candidate", hc)) if not h)
        judged = Judged("not-judged", f"no {family} of the {missing} in the window")
        return result(
            key, figure, "seconds", None, None, "higher", tolerance, threshold_text, nothing,
            judged,
        )  # fmt: skip
    layouts = [*hb.values(), *hc.values()]
    bounds = common_bounds(layouts)
    notes = []
    uneven = any(set(layout) != set(layouts[0]) for layout in layouts)
    if uneven:
        engines = ", ".join(sorted({*hb, *hc}))
        notes.append(
            f"the bucket layouts differ ({engines}): compared on the {len(bounds)} boundaries "
            "they share"
        )
    finite = [b for b in bounds if not math.isinf(b)]
    if not finite or not math.isinf(bounds[-1]):
        judged = Judged("not-judged", "the two bucket layouts share no boundary to compare on")
        return result(
            key, figure, "seconds", None, None, "higher", tolerance, threshold_text, nothing,
            judged, notes=notes,
        )  # fmt: skip
    cb, cc = cumulative(hb, bounds), cumulative(hc, bounds)
    n1, n2 = cb[-1][1], cc[-1][1]
    qb, qc = histogram_quantile(q, cb), histogram_quantile(q, cc)
    tail = tail_boundary(cb, finite, q)
    blocks = (
        tail_blocks(ctx.baseline.step_histograms.get(key, {}), tail),
        tail_blocks(ctx.candidate.step_histograms.get(key, {}), tail),
    )
    texts = {role: _le_texts(v.histograms[key], tail) for role, v in ctx.variants()}
    common = {
        role: [t for b in bounds for t in _le_texts(v.histograms[key], b)] if uneven else []
        for role, v in ctx.variants()
    }
    allowed = None
    if tolerance is not None:
        # The threshold on the share scale: how much the share above the tail boundary would
        # rise if the candidate were uniformly `tolerance` slower than the baseline.
        allowed = share_above(cb, tail / (1 + tolerance)) - share_above(cb, tail)

    def describe(d: float) -> str:
        return f"{points(d)} of requests above {tail:g} s"

    test_name = (
        f"t-test on the share of requests above {tail:g} s (standard errors from {res} steps)"
    )
    out = blocks_test(
        ctx,
        blocks,
        (n1, n2),
        st.binomial_floor,
        allowed if allowed is None or allowed > 0 else None,
        test_name,
        describe,
    )
    judged = out.judged
    assert judged is not None
    if allowed is not None and allowed <= 0 and judged.status == "not-judged":
        judged = Judged(
            "not-judged",
            f"the baseline has no observations just under {tail:g} s, the largest boundary it "
            "reaches: this histogram cannot measure a regression there",
        )
    change = f"{figure} {seconds_text(qb)} -> {seconds_text(qc)} ({relative_text(qb, qc)})"
    judged.reason = f"{change}; " + (
        f"{judged.reason}; a candidate {tolerance:.0%} slower would show {points(allowed)}"
        if judged.tested and allowed is not None and tolerance is not None
        else judged.reason
    )
    details: dict[str, float | str | None] = {
        "tail_boundary_seconds": tail,
        "baseline_share_above": out.r1.estimate if out.r1 else None,
        "candidate_share_above": out.r2.estimate if out.r2 else None,
        "tolerated_share_increase": allowed,
        "baseline_steps": float(len(blocks[0])),
        "candidate_steps": float(len(blocks[1])),
    }
    evidence = [
        *ctx.evidence(
            f"{key} {figure}",
            lambda v: cq.quantile(key, q, w, v.ref.matchers(), common[role_of(ctx, v)]),
            lambda v: qb if v is ctx.baseline else qc,
            "seconds",
        ),
        *ctx.evidence(
            f"{key} observations",
            lambda v: cq.observations(key, w, v.ref.matchers()),
            lambda v: n1 if v is ctx.baseline else n2,
            "requests",
        ),
        *ctx.summed(
            f"{key} observations",
            lambda v: cq.observations(key, res, v.ref.matchers()),
            lambda v: ratio_part(out, v is ctx.baseline, "n"),
            "requests",
        ),
        *ctx.summed(
            f"{key} observations above {tail:g} s",
            lambda v: cq.tail_count(key, res, v.ref.matchers(), texts[role_of(ctx, v)]),
            lambda v: ratio_part(out, v is ctx.baseline, "x"),
            "requests",
        ),
    ]
    return result(
        key, figure, "seconds", qb, qc, "higher", tolerance, threshold_text,
        {"baseline": n1, "candidate": n2}, judged, out.test, ctx.alpha, details=details,
        evidence=evidence, notes=notes,
    )  # fmt: skip
