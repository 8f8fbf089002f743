"""What the advisor judges a deployment against: its SLOs' targets, else the alert defaults.

A latency SLO "99% of requests get their first token within 1 s" becomes the target
`ttft p99 <= 1 s`: over the window, the 99th percentile must stay at or under the threshold
(the same statement as "at least 99% of requests at or under it", read from the same buckets).
A deployment without latency SLOs is held to the alerts' p95 thresholds
(`AlertConfig.ttft_p95_seconds`, `tpot_p95_seconds`), so advice never lacks a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferwatch.alerts.config import AlertConfig
from inferwatch.slo import queries
from inferwatch.slo.figures import Headline
from inferwatch.slo.flags import format_value
from inferwatch.slo.spec import AvailabilitySLI, LatencySLI, SLOSpec


def pct(q: float) -> str:
    """0.99 -> "99", 0.999 -> "99.9"."""
    return f"{q * 100:.4f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class LatencyObjective:
    name: str  # the SLO's name, or "default"
    histogram: str  # a key of queries.HISTOGRAMS
    quantile: float
    threshold: float

    def describe(self) -> str:
        return f"{self.histogram} p{pct(self.quantile)} <= {format_value(self.threshold)} s"


@dataclass(frozen=True)
class AvailabilityObjective:
    name: str
    objective: float
    reasons: tuple[str, ...]


_HISTOGRAM_KEYS = {family: key for key, family in queries.HISTOGRAMS.items()}


def objectives_for(
    namespace: str | None,
    deployment: str | None,
    specs: Sequence[SLOSpec],
    config: AlertConfig | None = None,
) -> tuple[tuple[LatencyObjective, ...], tuple[AvailabilityObjective, ...]]:
    """The deployment's SLOs as targets; without latency SLOs, the alerts' p95 thresholds."""
    latency: list[LatencyObjective] = []
    availability: list[AvailabilityObjective] = []
    for s in specs:
        if (s.namespace, s.deployment) != (namespace, deployment):
            continue
        if isinstance(s.sli, LatencySLI):
            latency.append(
                LatencyObjective(
                    s.name, _HISTOGRAM_KEYS[s.sli.metric], s.objective, s.sli.threshold
                )
            )
        elif isinstance(s.sli, AvailabilitySLI):
            availability.append(AvailabilityObjective(s.name, s.objective, s.sli.error_reasons))
    if not latency:
        config = config or AlertConfig()
        latency = [
            LatencyObjective("default", "ttft", 0.95, config.ttft_p95_seconds),
            LatencyObjective("default", "tpot", 0.95, config.tpot_p95_seconds),
        ]
    return tuple(latency), tuple(availability)


def headline(latency: Sequence[LatencyObjective], reported: Sequence[str]) -> Headline | None:
    """The latency the HPA relates to the queue: TTFT if it has a target and is reported,
    else the first target whose histogram is reported."""
    usable = [o for o in latency if o.histogram in reported]
    usable.sort(key=lambda o: o.histogram != "ttft")
    if not usable:
        return None
    o = usable[0]
    return Headline(o.histogram, o.quantile, o.threshold)
