"""Percentile summaries of latency samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PERCENTILES = (50, 90, 95, 99)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, interpolating linearly between ranks."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Count, mean and percentiles of one latency, in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary | None:
        """None when there are no samples: a figure that was not measured is absent."""
        if not values:
            return None
        ordered = sorted(values)
        p50, p90, p95, p99 = (percentile(ordered, q) for q in PERCENTILES)
        return cls(
            count=len(ordered),
            mean=math.fsum(ordered) / len(ordered),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            min=ordered[0],
            max=ordered[-1],
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)
