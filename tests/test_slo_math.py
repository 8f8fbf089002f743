"""The math the advisor computes in Python agrees with Prometheus' own functions: quantiles from
bucket increases (`histogram_quantile`), gauge statistics (`quantile_over_time`), counter
increases across resets; and the SLO budget arithmetic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.slo import sli
from inferwatch.slo.figures import counter_increase, histogram_quantile, quantile_of_sorted
from inferwatch.slo.spec import parse
from tests.harness.prometheus import Prometheus

pytestmark = pytest.mark.prometheus

BOUNDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _vector(pairs: list[tuple[float, float]]) -> str:
    """PromQL for an instant vector of bucket series with these `le` and values."""
    parts = [
        f'label_replace(vector({v!r}), "le", "{"+Inf" if math.isinf(le) else repr(le)}", "", "")'
        for le, v in pairs
    ]
    return " or ".join(parts)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 1000), min_size=len(BOUNDS) + 1, max_size=len(BOUNDS) + 1),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]),
)
def test_histogram_quantile_matches_prometheus(
    prometheus: Prometheus, counts: list[int], q: float
) -> None:
    cumulative, total = [], 0
    for c in counts:
        total += c
        cumulative.append(float(total))
    pairs = list(zip((*BOUNDS, math.inf), cumulative, strict=True))
    ours = histogram_quantile(q, pairs)
    theirs = prometheus.query(f"histogram_quantile({q}, {_vector(pairs)})")
    if ours is None:
        assert theirs == [] or math.isnan(theirs[0].value)  # type: ignore[index,union-attr]
    else:
        assert theirs[0].value == pytest.approx(ours, rel=1e-12)  # type: ignore[index,union-attr]


def test_histogram_quantile_lifts_non_monotonic_buckets(prometheus: Prometheus) -> None:
    pairs = [(0.1, 10.0), (0.5, 8.0), (1.0, 30.0), (math.inf, 30.0)]
    ours = histogram_quantile(0.5, pairs)
    theirs = prometheus.value(f"histogram_quantile(0.5, {_vector(pairs)})")
    assert ours == pytest.approx(theirs, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12))
def test_gauge_quantile_matches_quantile_over_time(
    prometheus: Prometheus, values: list[float]
) -> None:
    ours = quantile_of_sorted(0.95, sorted(values))
    # quantile() over a vector uses the same interpolation as quantile_over_time.
    vector = " or ".join(
        f'label_replace(vector({v!r}), "i", "{i}", "", "")' for i, v in enumerate(values)
    )
    assert prometheus.value(f"quantile(0.95, {vector})") == pytest.approx(ours, abs=1e-9)


def test_counter_increase_handles_restarts() -> None:
    assert counter_increase([10, 15, 3, 8]) == 5 + 3 + 5
    assert counter_increase([5]) == 0
    assert counter_increase([]) == 0


def test_budget_arithmetic() -> None:
    (spec,) = parse(
        "slos:\n  - name: a\n    namespace: n\n    deployment: d\n"
        "    sli: {type: availability}\n    objective: 0.999\n    period: 28d\n"
    )
    assert sli.budget_remaining(0.0004, spec) == pytest.approx(0.6)
    assert sli.budget_remaining(0.002, spec) == pytest.approx(-1.0)  # overspent
    assert sli.remaining_seconds(0.6, spec) == pytest.approx(0.6 * 0.001 * 28 * 86400)
    # At a burn rate of 2 the remaining 60% of a 28-day budget lasts 0.6 x 28 / 2 days.
    assert sli.exhaustion_seconds(0.6, 2.0, spec) == pytest.approx(0.6 * 28 * 86400 / 2)
    assert sli.exhaustion_seconds(0.6, 0.0, spec) is None
    assert sli.exhaustion_seconds(-0.5, 3.0, spec) == 0
    states = sli.alert_states({"1h": 15.0, "5m": 20.0, "6h": 1.0, "30m": 1.0}, spec)
    page = [s for s in states if s.severity == "critical"]
    assert [s.firing for s in page] == [True, False]
    assert page[0].factor == pytest.approx(13.44)  # 14.4 scaled to 28 days
    assert sli.budget_remaining(None, spec) is None
