"""Does an engine's latency histogram agree with what the client measured of the same requests?

The engine times each request from its arrival in the engine's frontend to the first token (or
the last) handed back by the engine core; the client times it from sending the request to
reading that token off the socket. So for every request i, engine_i <= client_i: the client's
interval contains the engine's. The rest of the client's interval (HTTP, the chat template and
tokenization before the engine's clock starts; detokenization, SSE framing, the socket and the
client's own event loop after it stops) is the frontend's overhead, bounded by `slack`:
client_i <= engine_i + slack.

A histogram does not say where in its bucket a request fell, so the comparison is made at the
bucket bounds, where both sides are exact counts. With E(b) the engine's requests within b and
C(x) the client's requests within x, the two inequalities above give, for every bound b:

    C(b) <= E(b) <= C(b + slack)

and for the k-th fastest request, which the engine puts in the bucket (lo, hi] where its
cumulative count first reaches k: lo < client_(k) <= hi + slack. The means are exact (the
histogram's `_sum` over `_count`): 0 <= client mean - engine mean <= mean slack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inferwatch.load.stats import percentile

QUANTILES = (0.5, 0.9, 0.99)
# Clock noise allowed where the bound is exact: the engine reads time.time(), the client
# perf_counter().
CLOCK_NOISE = 0.001


@dataclass(frozen=True)
class Histogram:
    """One histogram's increase over a window: cumulative counts by bucket bound (seconds,
    ascending, the last +Inf), and the increase of its `_sum` and `_count`."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def __post_init__(self) -> None:
        bounds = [le for le, _ in self.buckets]
        if not bounds or bounds != sorted(bounds) or not math.isinf(bounds[-1]):
            raise ValueError(f"bucket bounds must ascend to +Inf: {bounds}")

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def within(self, bound: float) -> float:
        return next(count for le, count in self.buckets if le >= bound)

    def rank_bucket(self, k: int) -> tuple[float, float]:
        """The bounds (lo, hi] of the bucket that holds the k-th fastest request (1-based)."""
        lower = 0.0
        for le, count in self.buckets:
            if count >= k:
                return lower, le
            lower = le
        raise ValueError(f"the histogram holds {self.count:g} requests, not {k}")


@dataclass(frozen=True)
class Quantile:
    """One quantile seen from both sides, in seconds."""

    q: float
    client: float  # the load generator's percentile (interpolated between ranks)
    engine: float  # histogram_quantile over the engine's buckets
    bucket: tuple[float, float]  # where the engine put the request of that rank


@dataclass
class Comparison:
    """A latency of the same requests, from the client and from the engine's histogram."""

    name: str
    client: Sequence[float]
    engine: Histogram
    slack: float
    mean_slack: float
    quantiles: list[Quantile] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = sorted(self.client)

    @property
    def client_mean(self) -> float:
        return math.fsum(self.client) / len(self.client) if self.client else math.nan

    def client_within(self, bound: float) -> int:
        return sum(1 for x in self.client if x <= bound)

    def add_quantiles(self, engine_quantile: Callable[[float], float]) -> None:
        """Fill `quantiles`; `engine_quantile(q)` is the engine's estimate (from Prometheus)."""
        n = len(self.client)
        self.quantiles = [
            Quantile(
                q,
                percentile(self.client, q * 100),
                engine_quantile(q),
                self.engine.rank_bucket(max(1, math.ceil(q * n))),
            )
            for q in QUANTILES
        ]

    def violations(self) -> list[str]:
        """Every way the two sides disagree beyond the stated slack; empty when they agree."""
        found = []
        if self.engine.count != len(self.client):
            return [
                f"{self.name}: the engine counted {self.engine.count:g} requests, "
                f"the client {len(self.client)}"
            ]
        for le, engine in self.engine.buckets:
            if math.isinf(le):
                continue
            # The bound is exact in one direction, so only clock noise is allowed there.
            sooner = self.client_within(le - CLOCK_NOISE)
            later = self.client_within(le + self.slack)
            if engine < sooner:
                found.append(
                    f"{self.name}: the engine has {engine:g} requests within {le:g}s, "
                    f"fewer than the {sooner} the client saw within that"
                )
            if engine > later:
                found.append(
                    f"{self.name}: the engine has {engine:g} requests within {le:g}s, "
                    f"more than the {later} the client saw within {le + self.slack:g}s"
                )
        overhead = self.client_mean - self.engine.mean
        if not -CLOCK_NOISE <= overhead <= self.mean_slack:
            found.append(
                f"{self.name}: client mean {self.client_mean:.4f}s - engine mean "
                f"{self.engine.mean:.4f}s = {overhead:.4f}s, outside [0, {self.mean_slack}]"
            )
        n = len(self.client)
        for q in QUANTILES:
            k = max(1, math.ceil(q * n))
            lo, hi = self.engine.rank_bucket(k)
            kth = self.client[k - 1]
            if not lo - CLOCK_NOISE < kth <= hi + self.slack:
                found.append(
                    f"{self.name}: request {k} of {n} took {kth:.4f}s for the client; the engine "
                    f"put it in ({lo:g}, {hi:g}]s (slack {self.slack}s)"
                )
        return found

    def rows(self) -> list[str]:
        """The figures, one line each, for the run's report."""
        out = [
            f"{self.name}: {len(self.client)} requests; mean client {self.client_mean * 1000:.1f}"
            f" ms, engine {self.engine.mean * 1000:.1f} ms (exact, _sum/_count)"
        ]
        for x in self.quantiles:
            lo, hi = x.bucket
            out.append(
                f"  p{x.q * 100:g}: client {x.client * 1000:.1f} ms, engine "
                f"{x.engine * 1000:.1f} ms (histogram_quantile; bucket ({lo:g}, {hi:g}] s)"
            )
        return out
