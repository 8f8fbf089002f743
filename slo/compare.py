"""The canary comparison: two deployments' window figures in, a verdict with its evidence out.

`compare(baseline, candidate, thresholds, window)` is pure: the figures (`Variant`) are read
from Prometheus by `compare_prometheus`, and everything here is arithmetic on them. One entry
per SLI, each judged against the user's threshold (`Thresholds`) with a one-sided test (is the
candidate worse?):

- `ttft`, `tpot`, `e2e`: the quantile (p95) from the bucket increases; a two-proportion z-test
  on the share of requests above the bucket boundary at the baseline's quantile;
- `error_ratio`: errors over finished requests; a two-proportion z-test;
- `preemptions`: preemptions per finished request; the exact conditional test of two Poisson
  rates;
- `kv_cache`: the fullest pod's KV-cache usage, mean over steps; Welch's t-test on the steps;
- `tokens_per_gpu`: generated tokens/s per GPU (per pod without GPU series), mean over steps;
  Welch's t-test on the steps.

Each SLI is `fail` when its test is significant *and* the difference is beyond the threshold;
`pass` when the one-sided upper confidence bound of the difference is under the threshold
(the data shows the candidate is at most that much worse); `insufficient` otherwise, or when a
variant has fewer than `min_requests` requests (`min_steps` steps for gauges); `not-judged`
without a threshold or without the figures. The significance is split evenly over the judged
SLIs (Bonferroni), so that equal variants are rolled back with a chance of at most
`significance` whatever the number of SLIs. The verdict: `rollback` if any SLI fails, else
`hold` if any is insufficient (with how much more data it needs), else `promote`.

docs/compare.md explains the choices; `compare_stats` holds the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.alerts.promql import Matcher
from inferwatch.slo import compare_queries as cq
from inferwatch.slo import compare_stats as st
from inferwatch.slo.figures import Evidence, Stat, histogram_quantile

DEFAULT_WINDOW = "1h"
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 31 * 86400

Verdict = Literal["promote", "hold", "rollback"]
Status = Literal["pass", "fail", "insufficient", "not-judged"]
Role = Literal["baseline", "candidate"]
LATENCY: dict[str, str] = {
    "ttft": "time to first token",
    "tpot": "time per output token",
    "e2e": "end-to-end latency",
}
SLIS: dict[str, str] = {
    **LATENCY,
    "error_ratio": "error ratio",
    "tokens_per_gpu": "generated tokens/s per GPU",
    "kv_cache": "KV-cache usage",
    "preemptions": "preemptions per request",
}


class CompareInputError(ValueError):
    """A comparison asked for with a bad deployment reference, window or threshold."""


class Thresholds(BaseModel):
    """What the user tolerates, and how sure the comparison must be. `None` leaves an SLI
    reported but not judged."""

    model_config = ConfigDict(extra="forbid")

    significance: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        allow_inf_nan=False,
        description="Family-wise chance of rolling back a candidate that is not worse; split "
        "evenly over the judged SLIs (Bonferroni). Also the confidence of a pass (1 - it).",
    )
    min_requests: int = Field(
        200,
        ge=1,
        le=10**9,
        description="Finished requests each variant needs before a request-based SLI is judged "
        "(200: ten requests in the 5% tail behind a p95).",
    )
    min_steps: int = Field(
        10, ge=2, le=10_000, description="Steps with data each variant needs for gauge SLIs."
    )
    latency_quantile: float = Field(
        0.95, ge=0.5, le=0.999, allow_inf_nan=False, description="The latency quantile compared."
    )
    ttft_max_regression: float | None = Field(
        0.10,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="Largest tolerated TTFT regression, relative (0.10: the quantile 10% higher).",
    )
    tpot_max_regression: float | None = Field(
        0.10, ge=0, le=100, allow_inf_nan=False, description="The same for TPOT."
    )
    e2e_max_regression: float | None = Field(
        0.10, ge=0, le=100, allow_inf_nan=False, description="The same for end-to-end latency."
    )
    error_ratio_max_increase: float | None = Field(
        0.005,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Largest tolerated error-ratio increase, absolute (0.005: half a point).",
    )
    kv_cache_max_increase: float | None = Field(
        0.10,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Largest tolerated increase of the mean KV-cache usage, absolute (0.10: "
        "ten points).",
    )
    preemptions_max_increase: float | None = Field(
        0.05,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="Largest tolerated increase of preemptions per request, absolute.",
    )
    throughput_max_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Largest tolerated drop of generated tokens/s per GPU, relative. Unset by "
        "default: throughput follows the traffic each variant gets, so it compares only under "
        "an even split.",
    )


# ---- what is compared ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A deployment: `NAMESPACE/DEPLOYMENT`, both validated as Kubernetes names."""

    namespace: str
    deployment: str

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.deployment}"

    def matchers(self) -> list[Matcher]:
        return [promql.eq("namespace", self.namespace), promql.eq("deployment", self.deployment)]


def parse_ref(text: str, what: str) -> Ref:
    """`llm/chat-v2` -> Ref; CompareInputError naming `what` (baseline, candidate) otherwise."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise CompareInputError(f"{what} {text!r}: expected NAMESPACE/DEPLOYMENT, e.g. llm/chat-v2")
    namespace, deployment = text.split("/")
    try:
        return Ref(promql.validate_namespace(namespace), promql.validate_deployment(deployment))
    except promql.UnsafeName as exc:
        raise CompareInputError(f"{what} {text!r}: {exc}") from None


def validate_window(text: str) -> str:
    try:
        seconds = promql.seconds(promql.validate_duration(text))
    except promql.UnsafeName:
        raise CompareInputError(
            f"window {text!r}: expected a Prometheus duration such as 30m, 1h or 1d"
        ) from None
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise CompareInputError(f"window {text!r}: must be between 1m and 31d")
    return text


# engine -> upper bound -> (the `le` label text, cumulative count)
Layout = dict[float, tuple[str, float]]


@dataclass
class Variant:
    """One deployment's figures over the window, as read from Prometheus."""

    ref: Ref
    engines: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    finished: dict[str, float] = field(default_factory=dict)  # reason -> requests
    histograms: dict[str, dict[str, Layout]] = field(default_factory=dict)  # ttft -> engine -> ..
    counters: dict[str, float] = field(default_factory=dict)  # generation_tokens, preemptions
    # Per step (time -> value): `kv` usage, generated tokens/s `rate`, `gpus`, `pods`, and the
    # increase of `preemptions` over the step.
    steps: dict[str, dict[float, float]] = field(default_factory=dict)
    # Per step, the increases over the step: requests by reason; bucket counts per engine.
    step_finished: dict[float, dict[str, float]] = field(default_factory=dict)
    step_histograms: dict[str, dict[float, dict[str, Layout]]] = field(default_factory=dict)

    @property
    def requests(self) -> float | None:
        return math.fsum(self.finished.values()) if self.finished else None

    def errors(self, reasons: Sequence[str]) -> float:
        return math.fsum(c for r, c in self.finished.items() if r in reasons)


@dataclass(frozen=True)
class Window:
    """Where the figures were read: the window, the per-step resolution, the time."""

    window: str
    resolution: str
    at: float

    @property
    def seconds(self) -> int:
        return promql.seconds(self.window)

    def span(self, v: Variant) -> float:
        """Seconds of the window the variant had serving pods (its requests came in then)."""
        serving = sum(1 for value in v.steps.get("pods", {}).values() if value > 0)
        if not serving:
            return float(self.seconds)
        return min(float(self.seconds), serving * promql.seconds(self.resolution))


# ---- what the comparison says -------------------------------------------------------------------


class Needed(BaseModel):
    """How much more data a `hold` needs, at the variants' current request rates."""

    factor: float | None  # times the data of this window; None: cannot tell
    candidate_requests: int | None  # more requests the candidate needs
    seconds: float | None  # how long they take at the candidate's current rate
    window: str | None  # a window that would then hold the candidate's data
    reason: str


class SLIResult(BaseModel):
    sli: str
    title: str
    figure: str  # what `baseline` and `candidate` are: "p95", "ratio", "mean per step", ...
    unit: str
    baseline: float | None
    candidate: float | None
    difference: float | None  # candidate - baseline
    relative_difference: float | None
    worse_when: Literal["higher", "lower"]
    test: str | None
    test_statistic: float | None
    p_value: float | None
    significance: float | None  # the p-value a failure needs (the share of `significance`)
    threshold: float | None  # the user's tolerance
    threshold_text: str
    status: Status
    reason: str
    observations: dict[str, float | None]  # requests (or steps) of each variant
    details: dict[str, float | str | None] = Field(default_factory=dict)
    needed_factor: float | None = None  # for `insufficient`: times this window's data
    evidence: list[Evidence] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class VariantSummary(BaseModel):
    namespace: str
    deployment: str
    engines: list[str]
    models: list[str]
    requests: float | None
    request_rate: float | None  # finished requests per second while serving in the window
    span_seconds: float


class Comparison(BaseModel):
    verdict: Verdict
    summary: str
    baseline: VariantSummary
    candidate: VariantSummary
    window: str
    resolution: str  # of the per-step figures (KV cache, throughput)
    at: float  # the evaluation time: every evidence query returns its value at this time
    slis: dict[str, SLIResult]
    needed: Needed | None
    thresholds: Thresholds
    notes: list[str]


# ---- judging ------------------------------------------------------------------------------------


@dataclass
class _Judged:
    status: Status
    reason: str
    factor: float | None = None
    tested: bool = False  # decided by the test and the bound (not by too little data)


def _judge(
    bound: st.Bound,
    test: st.TestResult,
    alpha: float,
    tolerance: float,
    describe: Callable[[float], str],
) -> _Judged:
    """The three outcomes of an SLI with enough data (see the module docstring)."""
    worse = describe(bound.difference)
    if test.p_value < alpha and bound.difference > tolerance:
        return _Judged(
            "fail", f"{worse}, beyond the threshold, significant ({_p(test)})", tested=True
        )
    if bound.upper < tolerance:
        upper = describe(bound.upper)
        return _Judged(
            "pass", f"{worse}; at worst {upper} ({_confidence(alpha)} bound)", tested=True
        )
    if bound.difference < tolerance:
        factor = bound.scale_to_pass(tolerance)
        why = f"{worse}, but it could be up to {describe(bound.upper)}"
    else:
        factor = bound.scale_to_significance()
        why = f"{worse}, beyond the threshold but not significant ({_p(test)})"
    return _Judged("insufficient", why, factor, tested=True)


def _p(test: st.TestResult) -> str:
    return f"p={test.p_value:.2g}" if test.p_value >= 1e-12 else "p<1e-12"


def _confidence(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.3g}%"


def _too_few(n1: float | None, n2: float | None, minimum: float, what: str) -> _Judged | None:
    short = [
        (role, n) for role, n in (("baseline", n1 or 0.0), ("candidate", n2 or 0.0)) if n < minimum
    ]
    if not short:
        return None
    text = " and ".join(f"the {role} has {n:.0f}" for role, n in short)
    factor = max(minimum / n if n > 0 else math.inf for _role, n in short)
    return _Judged("insufficient", f"{text} {what}, fewer than the {minimum:g} needed", factor)


@dataclass
class _Context:
    baseline: Variant
    candidate: Variant
    th: Thresholds
    window: Window
    alpha: float  # per SLI

    def variants(self) -> tuple[tuple[Role, Variant], ...]:
        return (("baseline", self.baseline), ("candidate", self.candidate))

    def evidence(
        self, what: str, expr: Callable[[Variant], str], value: Callable[[Variant], float | None]
    ) -> list[Evidence]:
        w = self.window.window
        return [
            Evidence(name=f"{role} {what} over {w}", promql=expr(v), value=value(v))
            for role, v in self.variants()
        ]

    def summed(
        self, what: str, expr: Callable[[Variant], str], value: Callable[[Variant], float | None]
    ) -> list[Evidence]:
        """Evidence of a figure the tests read per step (`expr` over one step), summed."""
        w, res = self.window.window, self.window.resolution
        return self.evidence(
            f"{what}, per {res} step, summed",
            lambda v: cq.over_steps("sum", expr(v), w, res),
            value,
        )


def _role(ctx: _Context, v: Variant) -> Role:
    return "baseline" if v is ctx.baseline else "candidate"


def _result(
    sli: str,
    figure: str,
    unit: str,
    baseline: float | None,
    candidate: float | None,
    worse_when: Literal["higher", "lower"],
    threshold: float | None,
    threshold_text: str,
    observations: Mapping[str, float | None],
    judged: _Judged,
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
class _Blocks:
    """A request-based SLI's test on per-step blocks: the ratios, the test, the judgement."""

    r1: st.Ratio | None
    r2: st.Ratio | None
    test: st.TestResult | None = None
    judged: _Judged | None = None


def _blocks_test(
    ctx: _Context,
    blocks: tuple[list[tuple[float, float]], list[tuple[float, float]]],
    requests: tuple[float, float],
    floor: Callable[[float, float], float],
    tolerance: float | None,
    name: str,
    describe: Callable[[float], str],
) -> _Blocks:
    """Judge `x/n` of the candidate against the baseline's from per-step `(x, n)` blocks, once
    each variant has `min_requests` requests and `min_steps` steps."""
    th = ctx.th
    r1, r2 = st.ratio(blocks[0]), st.ratio(blocks[1])
    out = _Blocks(r1, r2)
    bound = None
    if r1 is not None and r2 is not None:
        out.test, bound = st.compare_ratios(
            r1, r2, floor(r1.x, r1.n), floor(r2.x, r2.n), ctx.alpha, name
        )
    out.judged = _too_few(*requests, th.min_requests, "requests") or _too_few(
        len(blocks[0]), len(blocks[1]), th.min_steps, "steps with data"
    )
    if out.judged is None and (r1 is None or r2 is None or out.test is None):
        out.judged = _Judged("insufficient", "no requests in the steps of a variant", math.inf)
    if out.judged is None and tolerance is None:
        out.judged = _Judged("not-judged", "no threshold set")
    if out.judged is None and out.test is not None and bound is not None:
        out.judged = _judge(bound, out.test, ctx.alpha, tolerance, describe)
    return out


# ---- latency: histograms -------------------------------------------------------------------------


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


def _latency(key: str, ctx: _Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    q = th.latency_quantile
    figure = f"p{_percent(q)}"
    tolerance: float | None = getattr(th, f"{key}_max_regression")
    threshold_text = (
        f"{figure} at most {tolerance:.0%} higher" if tolerance is not None else "none set"
    )
    hb, hc = ctx.baseline.histograms.get(key), ctx.candidate.histograms.get(key)
    family = cq.queries.HISTOGRAMS[key]
    nothing = {"baseline": None, "candidate": None}
    if not hb or not hc:
        missing = " and ".join(role for role, h in (("baseline", hb), ("candidate", hc)) if not h)
        judged = _Judged("not-judged", f"no {family} of the {missing} in the window")
        return _result(
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
        judged = _Judged("not-judged", "the two bucket layouts share no boundary to compare on")
        return _result(
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
        return f"{_points(d)} of requests above {tail:g} s"

    test_name = f"t-test on the share of requests above {tail:g} s, errors from {res} steps"
    out = _blocks_test(
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
        judged = _Judged(
            "not-judged",
            f"the baseline has no observations just under {tail:g} s, the largest boundary it "
            "reaches: this histogram cannot measure a regression there",
        )
    judged.reason = f"{figure} {_seconds(qb)} -> {_seconds(qc)} ({_relative(qb, qc)}); " + (
        f"{judged.reason} (a {tolerance:.0%} slower candidate: {_points(allowed)})"
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
    matchers = {role: v.ref.matchers() for role, v in ctx.variants()}
    evidence = [
        *ctx.evidence(
            f"{key} {figure}",
            lambda v: cq.quantile(key, q, w, matchers[_role(ctx, v)], common[_role(ctx, v)]),
            lambda v: qb if v is ctx.baseline else qc,
        ),
        *ctx.evidence(
            f"{key} observations",
            lambda v: cq.observations(key, w, matchers[_role(ctx, v)]),
            lambda v: n1 if v is ctx.baseline else n2,
        ),
        *ctx.summed(
            f"{key} observations",
            lambda v: cq.observations(key, res, matchers[_role(ctx, v)]),
            lambda v: _ratio_part(out, v is ctx.baseline, "n"),
        ),
        *ctx.summed(
            f"{key} observations above {tail:g} s",
            lambda v: cq.tail_count(key, res, matchers[_role(ctx, v)], texts[_role(ctx, v)]),
            lambda v: _ratio_part(out, v is ctx.baseline, "x"),
        ),
    ]
    return _result(
        key, figure, "seconds", qb, qc, "higher", tolerance, threshold_text,
        {"baseline": n1, "candidate": n2}, judged, out.test, ctx.alpha, details=details,
        evidence=evidence, notes=notes,
    )  # fmt: skip


def _ratio_part(out: _Blocks, baseline: bool, part: str) -> float | None:
    r = out.r1 if baseline else out.r2
    return None if r is None else getattr(r, part)


# ---- counts: errors and preemptions --------------------------------------------------------------


def _error_blocks(v: Variant, reasons: Sequence[str]) -> list[tuple[float, float]]:
    return [
        (math.fsum(c for r, c in by_reason.items() if r in reasons), math.fsum(by_reason.values()))
        for _t, by_reason in sorted(v.step_finished.items())
    ]


def _error_ratio(ctx: _Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.error_ratio_max_increase
    reasons = schema.ERROR_REASONS
    threshold_text = f"at most {_points(tolerance)} higher" if tolerance is not None else "none set"
    n1, n2 = ctx.baseline.requests, ctx.candidate.requests
    observations = {"baseline": n1, "candidate": n2}
    if n1 is None or n2 is None:
        judged = _Judged("not-judged", "no llm_requests_finished_total of a variant in the window")
        return _result(
            "error_ratio", "ratio", "ratio", None, None, "higher", tolerance, threshold_text,
            observations, judged,
        )  # fmt: skip
    errors = {role: v.errors(reasons) for role, v in ctx.variants()}
    p1 = errors["baseline"] / n1 if n1 > 0 else None
    p2 = errors["candidate"] / n2 if n2 > 0 else None
    blocks = (_error_blocks(ctx.baseline, reasons), _error_blocks(ctx.candidate, reasons))
    out = _blocks_test(
        ctx, blocks, (n1, n2), st.binomial_floor, tolerance,
        f"t-test on the share of requests finished as {' or '.join(reasons)}, errors from "
        f"{res} steps",
        _points,
    )  # fmt: skip
    judged = out.judged
    assert judged is not None
    judged.reason = f"{_percent_text(p1)} -> {_percent_text(p2)}: {judged.reason}"
    matchers = {role: v.ref.matchers() for role, v in ctx.variants()}
    evidence = [
        *ctx.evidence(
            "requests finished",
            lambda v: cq.requests_total(w, matchers[_role(ctx, v)]),
            lambda v: v.requests,
        ),
        *ctx.evidence(
            f"requests finished as {' or '.join(reasons)}",
            lambda v: cq.requests_total(w, matchers[_role(ctx, v)], reasons),
            lambda v: errors[_role(ctx, v)],
        ),
        *ctx.summed(
            "requests finished",
            lambda v: cq.requests_total(res, matchers[_role(ctx, v)]),
            lambda v: _ratio_part(out, v is ctx.baseline, "n"),
        ),
        *ctx.summed(
            f"requests finished as {' or '.join(reasons)}",
            lambda v: cq.requests_total(res, matchers[_role(ctx, v)], reasons),
            lambda v: _ratio_part(out, v is ctx.baseline, "x"),
        ),
    ]
    return _result(
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


def _preemptions(ctx: _Context) -> SLIResult:
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
        return _result(
            "preemptions", "per request", "preemptions", None, None, "higher", tolerance,
            threshold_text, observations, _Judged("not-judged", why),
        )  # fmt: skip
    r1 = k1 / n1 if n1 > 0 else None
    r2 = k2 / n2 if n2 > 0 else None
    blocks = (_preemption_blocks(ctx.baseline), _preemption_blocks(ctx.candidate))
    out = _blocks_test(
        ctx, blocks, (n1, n2), st.poisson_floor, tolerance,
        f"t-test on preemptions per request, errors from {res} steps",
        lambda d: f"{d:+.3g} per request",
    )  # fmt: skip
    judged = out.judged
    assert judged is not None
    judged.reason = f"{_number(r1)} -> {_number(r2)} per request: {judged.reason}"
    matchers = {role: v.ref.matchers() for role, v in ctx.variants()}
    evidence = [
        *ctx.evidence(
            "preemptions",
            lambda v: cq.counter("preemptions", w, (), matchers[_role(ctx, v)]),
            lambda v: v.counters.get("preemptions"),
        ),
        *ctx.summed(
            "preemptions",
            lambda v: cq.counter("preemptions", res, (), matchers[_role(ctx, v)]),
            lambda v: _ratio_part(out, v is ctx.baseline, "x"),
        ),
    ]
    return _result(
        "preemptions", "per request", "preemptions", r1, r2, "higher", tolerance,
        threshold_text, observations, judged, out.test, ctx.alpha, evidence=evidence,
        details={"baseline_preemptions": k1, "candidate_preemptions": k2},
    )  # fmt: skip


# ---- per step: KV cache and throughput ----------------------------------------------------------


def _kv_cache(ctx: _Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.kv_cache_max_increase
    threshold_text = (
        f"mean at most {_points(tolerance)} higher" if tolerance is not None else "none set"
    )
    values = {role: list(v.steps.get("kv", {}).values()) for role, v in ctx.variants()}
    stats = {role: Stat.of(vs) for role, vs in values.items()}
    s1, s2 = stats["baseline"], stats["candidate"]
    observations = {role: float(len(vs)) for role, vs in values.items()}
    if s1 is None or s2 is None:
        judged = _Judged("not-judged", "no llm_kv_cache_usage_ratio of a variant in the window")
        return _result(
            "kv_cache", "mean per step", "ratio", None, None, "higher", tolerance,
            threshold_text, observations, judged,
        )  # fmt: skip
    evidence = [
        *ctx.evidence(
            "KV-cache usage mean",
            lambda v: cq.over_steps("mean", cq.kv_cache((), v.ref.matchers()), w, res),
            lambda v: stats[_role(ctx, v)].mean,  # type: ignore[union-attr]
        ),
        *ctx.evidence(
            "KV-cache usage p95",
            lambda v: cq.over_steps("p95", cq.kv_cache((), v.ref.matchers()), w, res),
            lambda v: stats[_role(ctx, v)].p95,  # type: ignore[union-attr]
        ),
    ]
    details: dict[str, float | str | None] = {
        "baseline_p95": s1.p95,
        "candidate_p95": s2.p95,
        "resolution": res,
    }
    test, judged = _steps_test(values["baseline"], values["candidate"], ctx, lower=False)
    if judged is None and tolerance is None:
        judged = _Judged("not-judged", "no threshold set")
    if judged is None and test is not None and tolerance is not None:
        bound = _steps_bound(values["baseline"], values["candidate"], ctx.alpha, lower=False)
        judged = _judge(bound, test, ctx.alpha, tolerance, lambda d: f"{_points(d)}")
        judged.reason = f"mean {s1.mean:.1%} -> {s2.mean:.1%}: {judged.reason}"
    assert judged is not None
    return _result(
        "kv_cache", "mean per step", "ratio", s1.mean, s2.mean, "higher", tolerance,
        threshold_text, observations, judged, test, ctx.alpha, details=details,
        evidence=evidence,
    )  # fmt: skip


def _steps_test(
    v1: list[float], v2: list[float], ctx: _Context, lower: bool
) -> tuple[st.TestResult | None, _Judged | None]:
    too_few = _too_few(len(v1), len(v2), ctx.th.min_steps, "steps with data")
    if len(v1) < 2 or len(v2) < 2:
        return None, too_few
    sign = -1.0 if lower else 1.0
    m1, var1 = _mean_var([sign * x for x in v1])
    m2, var2 = _mean_var([sign * x for x in v2])
    return st.welch(m1, var1, len(v1), m2, var2, len(v2)), too_few


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


def _tokens_per_gpu(ctx: _Context) -> SLIResult:
    th, w, res = ctx.th, ctx.window.window, ctx.window.resolution
    tolerance = th.throughput_max_drop
    threshold_text = f"mean at most {tolerance:.0%} lower" if tolerance is not None else "none set"
    with_gpus = all(v.steps.get("gpus") for _role, v in ctx.variants())
    per = "GPU" if with_gpus else "pod"
    notes = [] if with_gpus else ["no GPU series for a variant (dcgm-exporter): per pod instead"]
    values = {role: list(_per_unit(v, per).values()) for role, v in ctx.variants()}
    stats = {role: Stat.of(vs) for role, vs in values.items()}
    s1, s2 = stats["baseline"], stats["candidate"]
    observations = {role: float(len(vs)) for role, vs in values.items()}
    figure = f"mean per step, per {per}"
    if s1 is None or s2 is None:
        judged = _Judged("not-judged", "no llm_generation_tokens_total of a variant in the window")
        return _result(
            "tokens_per_gpu", figure, "tokens/s", None, None, "lower", tolerance,
            threshold_text, observations, judged, notes=notes,
        )  # fmt: skip
    evidence = ctx.evidence(
        f"generated tokens/s per {per}, mean",
        lambda v: cq.over_steps("mean", cq.per_unit_rate(res, v.ref.matchers(), per), w, res),
        lambda v: stats[_role(ctx, v)].mean,  # type: ignore[union-attr]
    )
    test, judged = _steps_test(values["baseline"], values["candidate"], ctx, lower=True)
    if judged is None and tolerance is None:
        judged = _Judged("not-judged", "no threshold set: throughput follows each one's traffic")
    if judged is None and test is not None and tolerance is not None:
        bound = _steps_bound(values["baseline"], values["candidate"], ctx.alpha, lower=True)
        allowed = tolerance * s1.mean
        judged = _judge(bound, test, ctx.alpha, allowed, lambda d: f"{-d:+.4g} tokens/s")
        judged.reason = f"mean {s1.mean:.4g} -> {s2.mean:.4g} tokens/s per {per}: {judged.reason}"
    assert judged is not None
    return _result(
        "tokens_per_gpu", figure, "tokens/s", s1.mean, s2.mean, "lower", tolerance,
        threshold_text, observations, judged, test, ctx.alpha, evidence=evidence, notes=notes,
        details={"per": per, "resolution": res},
    )  # fmt: skip


# ---- the verdict --------------------------------------------------------------------------------


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
    ctx = _Context(baseline, candidate, th, window, alpha)
    results = [_latency(key, ctx) for key in LATENCY]
    results += [_error_ratio(ctx), _tokens_per_gpu(ctx), _kv_cache(ctx), _preemptions(ctx)]
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
            f"{_minutes(seconds)} at its current {rate:.3g} requests/s; compare again then "
            f"over a window of {wanted}."
        ),
    )


# ---- text ---------------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """A Prometheus duration at least `seconds` long, in whole minutes from 2m up: `1h30m`."""
    total = math.ceil(seconds)
    if total >= 120:
        total = math.ceil(total / 60) * 60
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _percent(q: float) -> str:
    return f"{q * 100:.4f}".rstrip("0").rstrip(".")


def _points(d: float) -> str:
    """A difference of ratios in percentage points: `+1.2 points`."""
    return f"{d * 100:+.2g} points"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _percent_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2%}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} s"


def _relative(before: float | None, after: float | None) -> str:
    if before is None or after is None or before == 0:
        return "n/a"
    return f"{(after - before) / before:+.1%}"
