"""What the advisor and the SLO service return: pydantic models, the API's response schemas.

A `Recommendation` always carries the same fields whatever produced it (Prometheus or direct
sampling): what to change (`parameter` spelled as the engine's flag, or `replicas`,
`minReplicas`, `maxReplicas`), from what to what, why in one sentence, the evidence (PromQL and
the value it returned), the expected effect, a confidence, and a patch ready to apply.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from inferwatch.slo.figures import Evidence

Kind = Literal["hpa", "engine-flag", "capacity"]
Confidence = Literal["high", "medium", "low"]
Direction = Literal["raise", "lower", "set"]
Status = Literal["healthy", "recommendations", "needs-attention", "insufficient-data"]
Value = float | int | str | None


class TargetRef(BaseModel):
    namespace: str | None
    deployment: str | None
    container: str | None = None
    engine: str | None = None
    model: str | None = None


class Patch(BaseModel):
    """How to apply a recommendation. Flags: an RFC 6902 JSON patch of the Deployment. HPA: the
    HorizontalPodAutoscaler with the prometheus-adapter rule it needs, or a KEDA ScaledObject
    instead. `kubectl` holds the command for each form present."""

    json_patch: list[dict[str, Any]] | None = None
    hpa: dict[str, Any] | None = None
    prometheus_adapter_rules: dict[str, Any] | None = None
    keda_scaled_object: dict[str, Any] | None = None
    kubectl: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Recommendation(BaseModel):
    kind: Kind
    target: TargetRef
    parameter: str
    current: Value
    current_source: str  # engine-info, deployment, default, observed, inferred, unknown
    proposed: Value
    direction: Direction
    rationale: str
    evidence: list[Evidence]
    expected_effect: str
    confidence: Confidence
    patch: Patch | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class FlagState(BaseModel):
    value: Value
    source: str
    note: str = ""


class ObjectiveCheck(BaseModel):
    """One latency or availability objective as the advisor judged it over the window."""

    name: str  # the SLO's name, or `default` for the built-in latency targets
    sli: str  # e.g. `ttft p99 <= 1 s`, `errors <= 0.1%`
    observed: float | None
    met: bool | None  # None: not enough data to judge


class Advice(BaseModel):
    target: TargetRef
    status: Status
    summary: str
    source: Literal["prometheus", "upstream", "snapshot"]
    window: str
    flags: dict[str, FlagState]
    flags_source: str
    objectives: list[ObjectiveCheck]
    recommendations: list[Recommendation]
    missing: list[str]
    notes: list[str]
    figures: dict[str, Any]


class BurnWindow(BaseModel):
    window: str
    error_ratio: float | None
    burn_rate: float | None


class AlertState(BaseModel):
    severity: str  # critical (page) or warning (ticket)
    long: str
    short: str
    factor: float
    firing: bool


class SLOStatus(BaseModel):
    name: str
    description: str
    namespace: str
    deployment: str
    sli: str
    objective: float
    period: str
    source: Literal["recording-rules", "raw-series"]
    sli_value: float | None  # the good ratio over the period so far
    error_ratio: float | None
    error_budget: float  # 1 - objective
    budget_remaining: float | None  # fraction of the budget left (negative once overspent)
    budget_remaining_seconds: float | None  # that fraction of the period's allowed bad time
    exhaustion_seconds: float | None  # at the 1h burn rate, when the budget runs out
    burn_rates: list[BurnWindow]
    alerts: list[AlertState]
    firing: list[str]  # severities that would fire now
    # The PromQL behind the figures: `error_ratio/<window>` (raw series) or the recorded
    # `error_ratio/<period>` and `burn_rate/<window>` series. Filled in by GET /v1/slos/{name};
    # empty in the list of every SLO.
    queries: dict[str, str]
    note: str = ""
