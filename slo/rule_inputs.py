"""What every advisor rule reads (`Inputs`) and writes (`Outcome`), and the helpers they share.

A rule is a function `(Inputs, Outcome) -> None`: it reads the figures, the flags and the
objectives, and appends recommendations, what it missed (data that stopped a judgement) and
notes. Rules never query anything: they are pure over their inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from inferwatch.slo import patches
from inferwatch.slo.figures import Evidence, Figures
from inferwatch.slo.flags import Current, flag, read_flags
from inferwatch.slo.kube import DeploymentSpec
from inferwatch.slo.models import Confidence, Direction, Recommendation, TargetRef
from inferwatch.slo.objectives import AvailabilityObjective, LatencyObjective

# How much data a judgement needs.
MIN_POINTS = 5  # gauge readings in the window
MIN_REQUESTS = 30  # finished requests (observations) to read a latency quantile


@dataclass
class Inputs:
    figures: Figures
    latency: tuple[LatencyObjective, ...]
    availability: tuple[AvailabilityObjective, ...] = ()
    deployment: DeploymentSpec | None = None
    deployment_note: str = ""  # why the Deployment was not read, when it was not
    # KEDA's serverAddress: the Prometheus the service reads, else the reference deployments'.
    prometheus_url: str = field(default_factory=lambda: _reference_prometheus())
    flags: dict[str, Current] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.flags:
            container = self.deployment.container if self.deployment else None
            self.flags = read_flags(self.figures.target.engine, self.figures.info, container)

    @property
    def engine(self) -> str | None:
        return self.figures.target.engine


def _reference_prometheus() -> str:
    from inferwatch.deploy import manifests

    return manifests.PROMETHEUS_URL


@dataclass
class Outcome:
    recommendations: list[Recommendation] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # stopped a judgement
    notes: list[str] = field(default_factory=list)


def ratio_text(value: float) -> str:
    return f"{value:.0%}" if value >= 0.1 else f"{value:.2%}"


def gib(value: float) -> str:
    return f"{value / 1024**3:.1f} GiB"


def round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def pow2_at_least(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, value))))


def target_ref(x: Inputs) -> TargetRef:
    t = x.figures.target
    return TargetRef(
        namespace=t.namespace,
        deployment=t.deployment,
        container=x.deployment.container_name if x.deployment else None,
        engine=t.engine,
        model=t.model,
    )


def flag_evidence(x: Inputs, current: Current) -> list[Evidence]:
    if current.source == "engine-info" and current.flag.info_label:
        return [x.figures.evidence_info(current.flag.info_label)]
    if current.source in ("deployment", "default") and x.deployment is not None:
        d = x.deployment
        where = (
            f"{current.location.field}[{current.location.index}]" if current.location else "unset"
        )
        value = current.value if isinstance(current.value, int | float) else None
        return [
            Evidence(
                name=f"{current.flag.name} in Deployment {d.namespace}/{d.name}",
                promql="",
                value=value,
                source="kubernetes",
                note=f"container {d.container_name!r} {where}: {current.describe()}",
            )
        ]
    return []


def flag_recommendation(
    x: Inputs,
    name: str,
    proposed: float | int | str,
    direction: Direction,
    rationale: str,
    effect: str,
    confidence: Confidence,
    evidence: list[Evidence],
    **details: object,
) -> Recommendation:
    current = x.flags.get(name)
    if current is None:
        current = Current(flag(x.engine or "", name), None, "unknown")
    t = x.figures.target
    patch = patches.flag_patch(current, proposed, x.deployment, t.namespace, t.deployment)
    return Recommendation(
        kind="engine-flag",
        target=target_ref(x),
        parameter=name,
        current=current.value,
        current_source=current.source,
        proposed=proposed,
        direction=direction,
        rationale=rationale,
        evidence=[*evidence, *flag_evidence(x, current)],
        expected_effect=effect,
        confidence=confidence,
        patch=patch,
        details=dict(details),
    )


def known(x: Inputs, name: str | None) -> float | int | str | None:
    if name is None:
        return None
    current = x.flags.get(name)
    return current.value if current is not None else None


def objective_for(x: Inputs, histogram: str) -> LatencyObjective | None:
    return next((o for o in x.latency if o.histogram == histogram), None)


def observed(fig: Figures, o: LatencyObjective) -> float | None:
    """The objective's quantile over the window, when enough requests were observed."""
    count = fig.observations(o.histogram)
    if count is None or count < MIN_REQUESTS:
        return None
    return fig.quantile(o.histogram, o.quantile)


def met(fig: Figures, o: LatencyObjective) -> bool | None:
    value = observed(fig, o)
    return None if value is None else value <= o.threshold


def tokens_per_request(fig: Figures) -> float | None:
    prompt, generated = fig.per_request("prompt_tokens"), fig.per_request("generation_tokens")
    if prompt is None or generated is None:
        return None
    return prompt + generated


def kv_bytes_per_token(fig: Figures, kv_dtype: str = "auto") -> int | None:
    """From the planner's catalog, when the model is a known one."""
    from inferwatch.slo import catalog, planner

    if not fig.target.model:
        return None
    try:
        arch = catalog.find_model(fig.target.model)
        return planner.kv_cache_bytes_per_token(arch, kv_dtype if kv_dtype != "fp8" else "fp8")
    except ValueError:
        return None


def gpu_supports_fp8(gpu_model: str | None) -> bool | None:
    """Whether the GPU has FP8 tensor cores (Ada, Hopper); None when it is not known."""
    from inferwatch.slo import catalog

    if not gpu_model:
        return None
    try:
        return catalog.find_gpu(gpu_model).fp8
    except ValueError:
        pass
    name = gpu_model.lower()
    for key in ("h200", "h100", "l40s", "l4", "a100", "a10"):
        if re.search(rf"\b{key}\b", name) or re.search(rf"\b{key}-", name):
            return catalog.GPUS[key if key in catalog.GPUS else key + "-80g"].fp8
    return None


def sentence(text: str) -> str:
    """`text` with its first letter upper-cased (unlike str.capitalize, keeps "KV" as it is)."""
    return text[:1].upper() + text[1:]
