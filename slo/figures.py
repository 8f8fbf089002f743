"""A window of normalized figures for one deployment: what the advisor reads.

The same `Figures` come from two places: Prometheus (`from_prometheus`, batched over every
deployment) or direct sampling of one engine's `/metrics` (`from_upstream`). Both reduce raw
data the same way, with the functions here:

- counters: the increase over the window (resets handled as Prometheus does);
- histograms: bucket increases, from which any quantile is read with Prometheus'
  `histogram_quantile` interpolation;
- gauges: one value per step (the fullest pod's KV cache, the mean queue per pod, ...), and
  their mean, 95th percentile and maximum over the window (`quantile_over_time`'s
  interpolation);
- a per-step series of replicas, load, queue per pod and the headline latency quantile, from
  which the HPA advice reads the relation between queue length and latency.

Each figure can show its evidence: the PromQL that reads it for this deployment (the
equivalent query when the figures were sampled directly) and the value it returned.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql
from inferwatch.alerts.promql import Matcher
from inferwatch.slo import queries

Source = Literal["prometheus", "upstream", "snapshot"]
GROUP = queries.GROUP


class Evidence(BaseModel):
    """A figure behind a recommendation: what was measured, how, and the value."""

    name: str
    promql: str
    value: float | str | None  # text for a stated setting such as kv_cache_dtype="auto"
    unit: str = ""
    source: str = "prometheus"
    note: str = ""


@dataclass(frozen=True)
class Target:
    """What the figures describe: a deployment (Prometheus), or one engine (direct sampling)."""

    namespace: str | None
    deployment: str | None
    engine: str | None = None
    model: str | None = None

    @property
    def name(self) -> str:
        if self.namespace and self.deployment:
            return f"{self.namespace}/{self.deployment}"
        return self.deployment or self.model or self.engine or "engine"

    def matchers(self) -> list[Matcher]:
        out = []
        if self.namespace is not None:
            out.append(promql.eq("namespace", self.namespace))
        if self.deployment is not None:
            out.append(promql.eq("deployment", self.deployment))
        if not out and self.engine is not None:
            out.append(promql.eq("engine", self.engine))
        return out


@dataclass(frozen=True)
class Stat:
    """A gauge over the window."""

    mean: float
    p95: float
    max: float
    min: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat | None:
        data = sorted(v for v in values if not math.isnan(v))
        if not data:
            return None
        return cls(
            mean=math.fsum(data) / len(data),
            p95=quantile_of_sorted(0.95, data),
            max=data[-1],
            min=data[0],
            count=len(data),
        )

    def get(self, stat: str) -> float:
        return {"mean": self.mean, "p95": self.p95, "max": self.max, "min": self.min}[stat]


def quantile_of_sorted(q: float, data: Sequence[float]) -> float:
    """Prometheus' `quantile`/`quantile_over_time`: linear between the closest ranks."""
    if not data:
        return math.nan
    rank = q * (len(data) - 1)
    low = max(0, min(len(data) - 1, math.floor(rank)))
    high = max(0, min(len(data) - 1, low + 1))
    weight = rank - math.floor(rank)
    return data[low] * (1 - weight) + data[high] * weight


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' `histogram_quantile` over (upper bound, cumulative count) pairs.

    None where Prometheus gives NaN: no +Inf bucket, fewer than two buckets, no observations.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    counts: list[float] = []
    for _, count in ordered:
        # A bucket lower than the one before is a scrape artefact: Prometheus lifts it.
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    upper = ordered[b][0]
    if b == 0 and upper <= 0:
        return upper
    start, count = 0.0, counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (upper - start) * (rank / count) if count > 0 else upper


def counter_increase(values: Sequence[float]) -> float:
    """How much a counter grew over consecutive samples; a drop is a restart from zero."""
    grown = 0.0
    for before, after in itertools.pairwise(values):
        grown += after - before if after >= before else after
    return grown


@dataclass(frozen=True)
class Point:
    """One step of the relation series (None where that figure had no value)."""

    t: float
    replicas: float | None
    request_rate: float | None
    queue_per_pod: float | None
    latency: float | None  # the headline objective's quantile at this step


@dataclass(frozen=True)
class Headline:
    """The latency the HPA advice relates to the queue: family, quantile and threshold."""

    histogram: str  # a key of queries.HISTOGRAMS
    quantile: float
    threshold: float


@dataclass
class Figures:
    target: Target
    source: Source
    window: str  # Prometheus duration text: "6h", "60s"
    step: str
    origin: str  # the Prometheus URL or the sampled /metrics URL
    finished: dict[str, float] = field(default_factory=dict)  # reason -> requests in window
    counters: dict[str, float] = field(default_factory=dict)  # queries.COUNTERS key -> increase
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    gauges: dict[str, Stat] = field(default_factory=dict)
    replicas: Stat | None = None  # pods serving, over the window's steps
    replicas_now: int | None = None
    series: list[Point] = field(default_factory=list)
    headline: Headline | None = None
    info: dict[str, str] = field(default_factory=dict)  # llm_engine_info labels
    gpu_model: str | None = None
    gpu_total_bytes: float | None = None
    startup_seconds: float | None = None  # the slowest measured pod start-up
    points: int = 0  # steps (or pages) the gauges were read at
    notes: list[str] = field(default_factory=list)
    # Read from the recording rules' series (alerts/recording.py) rather than raw ones: the
    # evidence then shows the recorded series and how the rules compute them.
    recorded: bool = False

    # ---- derived figures ------------------------------------------------------------------

    @property
    def window_seconds(self) -> int:
        return promql.seconds(self.window)

    @property
    def requests(self) -> float | None:
        return math.fsum(self.finished.values()) if self.finished else None

    def errors(self, reasons: Sequence[str]) -> float | None:
        if not self.finished:
            return None
        return math.fsum(v for r, v in self.finished.items() if r in reasons)

    def error_ratio(self, reasons: Sequence[str]) -> float | None:
        total, errors = self.requests, self.errors(reasons)
        if not total or errors is None:
            return None
        return errors / total

    @property
    def request_rate(self) -> float | None:
        total = self.requests
        return None if total is None else total / self.window_seconds

    def rate(self, counter: str) -> float | None:
        value = self.counters.get(counter)
        return None if value is None else value / self.window_seconds

    def per_request(self, counter: str) -> float | None:
        value, total = self.counters.get(counter), self.requests
        if value is None or not total:
            return None
        return value / total

    def quantile(self, histogram: str, q: float) -> float | None:
        data = self.buckets.get(histogram)
        return histogram_quantile(q, data) if data else None

    def observations(self, histogram: str) -> float | None:
        data = self.buckets.get(histogram)
        return next((c for le, c in data if math.isinf(le)), None) if data else None

    def gauge(self, name: str, stat: str) -> float | None:
        s = self.gauges.get(name)
        return None if s is None else s.get(stat)

    # ---- evidence ---------------------------------------------------------------------------

    @property
    def _labels(self) -> tuple[str, ...]:
        return GROUP if self.source == "prometheus" else ()

    def _evidence(
        self, name: str, expr: str, value: float | str | None, unit: str = ""
    ) -> Evidence:
        if self.source == "prometheus":
            return Evidence(name=name, promql=expr, value=value, unit=unit)
        where = (
            f"computed from {self.points} samples of {self.origin} over {self.window}"
            if self.source == "upstream"
            else f"from {self.origin}"
        )
        return Evidence(
            name=name,
            promql=expr,
            value=value,
            unit=unit,
            source=self.source,
            note=f"{where}; the PromQL reads the same figure from Prometheus",
        )

    def _recorded(self, ev: Evidence, computed: str) -> Evidence:
        ev.note = f"recorded by inferwatch's rules as {computed}" + (
            f"; {ev.note}" if ev.note else ""
        )
        return ev

    def evidence_gauge(self, name: str, stat: str) -> Evidence:
        matchers = self.target.matchers()
        expr = queries.gauge(name, self._labels, matchers, self.recorded)
        over = queries.stat_over_time(stat, expr, self.window, self.step)
        unit = "bytes" if name.endswith("_bytes") else ""
        label = f"{name} {stat} over {self.window}"
        if not self.recorded:
            return self._evidence(label, over, self.gauge(name, stat), unit)
        series = queries.RECORDED_GAUGES[name]
        read = promql.series(c.window_stat(series, stat), *matchers)
        computed = queries.stat_over_time(stat, series, self.window, self.step)
        return self._recorded(self._evidence(label, read, self.gauge(name, stat), unit), computed)

    def evidence_quantile(self, histogram: str, q: float) -> Evidence:
        expr = queries.quantile(
            histogram, q, self.window, self._labels, self.target.matchers(), self.recorded
        )
        label = f"{histogram} p{_percent(q)} over {self.window}"
        return self._evidence(label, expr, self.quantile(histogram, q), "seconds")

    def evidence_counter(self, counter: str) -> Evidence:
        expr = queries.counter(
            counter, self.window, self._labels, self.target.matchers(), self.recorded
        )
        ev = self._evidence(
            f"{counter} over {self.window}", expr, self.counters.get(counter), "total"
        )
        if not self.recorded:
            return ev
        return self._recorded(ev, queries.increase_from_rates(counter, self.window, GROUP, []))

    def evidence_requests(self) -> Evidence:
        expr = queries.finished(self.window, self._labels, self.target.matchers(), self.recorded)
        ev = self._evidence(
            f"requests finished over {self.window}", f"sum({expr})", self.requests, "requests"
        )
        if not self.recorded:
            return ev
        return self._recorded(ev, queries.increase_from_rates("finished", self.window, GROUP, []))

    def evidence_info(self, label: str) -> Evidence:
        expr = queries.engine_info(self.window, self.target.matchers())
        raw = self.info.get(label)
        value: float | str | None
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = raw
        ev = self._evidence(f"llm_engine_info label {label}", expr, value)
        ev.note = f"the value is the `{label}` label of these series" + (
            f"; {ev.note}" if ev.note else ""
        )
        return ev

    def evidence_series(
        self, name: str, value: float | None, expr: str, note: str, unit: str = ""
    ) -> Evidence:
        """A figure the advisor computed from per-step series (peaks, fitted relations):
        `expr` is the series it read, `note` how it reduced them."""
        ev = self._evidence(name, expr, value, unit)
        ev.note = f"{note}; {ev.note}" if ev.note else note
        return ev


def _percent(q: float) -> str:
    text = f"{q * 100:.4f}".rstrip("0").rstrip(".")
    return text


def merge_buckets(series: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sum counts of equal upper bounds (several series of one histogram)."""
    out: dict[float, float] = {}
    for le, count in series:
        out[le] = out.get(le, 0.0) + count
    return sorted(out.items())


def parse_le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def summary(fig: Figures) -> dict[str, Any]:
    """The figures as plain data for the API and the report (no raw series)."""
    return {
        "window": fig.window,
        "source": fig.source,
        "requests": fig.requests,
        "request_rate": fig.request_rate,
        "replicas_now": fig.replicas_now,
        "gauges": {
            name: {"mean": s.mean, "p95": s.p95, "max": s.max} for name, s in fig.gauges.items()
        },
        "latency_p95": {h: fig.quantile(h, 0.95) for h in queries.HISTOGRAMS if fig.buckets.get(h)},
        "startup_seconds": fig.startup_seconds,
    }
