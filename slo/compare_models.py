"""What the canary comparison reads and says: its inputs (the deployments, the window, the
user's thresholds, each variant's figures) and its answer (`Comparison`: the verdict, one
`SLIResult` per SLI with its evidence, and what a `hold` still needs).

The API returns `Comparison` as it is; `inferwatch compare --json` prints it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inferwatch.alerts import promql
from inferwatch.alerts.promql import Matcher
from inferwatch.slo.figures import Evidence

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
        ge=1e-6,
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
