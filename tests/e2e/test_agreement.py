"""The client-vs-engine latency comparison itself, on made-up requests: it accepts what a
faithful histogram of the same requests shows and finds each way one can be wrong."""

from __future__ import annotations

import math

import pytest

from tests.e2e.agreement import Comparison, Histogram

# vLLM 0.32.0's TTFT bucket bounds, up to one second.
BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0)
CLIENT = [0.012, 0.015, 0.018, 0.03, 0.045, 0.07, 0.2, 0.3, 0.33, 0.6]


def histogram(values: list[float], bounds: tuple[float, ...] = BOUNDS) -> Histogram:
    """What an engine that measured `values` would expose."""
    buckets = tuple((le, float(sum(1 for v in values if v <= le))) for le in bounds)
    return Histogram((*buckets, (math.inf, float(len(values)))), sum(values), len(values))


def compare(engine: list[float], client: list[float] = CLIENT) -> Comparison:
    return Comparison("TTFT", client, histogram(engine), slack=0.05, mean_slack=0.02)


def test_an_engine_a_little_sooner_than_the_client_agrees():
    # Each request 3 ms sooner on the engine's clock: its overhead outside the engine.
    comparison = compare([c - 0.003 for c in CLIENT])
    assert comparison.violations() == []
    comparison.add_quantiles(lambda q: 0.0)
    assert [x.bucket for x in comparison.quantiles] == [(0.04, 0.06), (0.25, 0.5), (0.5, 0.75)]
    assert comparison.quantiles[0].client == pytest.approx(0.0575)


def test_requests_straddling_a_bound_agree_at_bucket_resolution():
    # 0.0195 on the engine's clock, 0.021 on the client's: different buckets, same request.
    assert compare([0.0195], [0.021]).violations() == []


def test_an_engine_later_than_the_client_is_found():
    # A sidecar that doubled the engine's seconds: requests "slower" than the client saw.
    found = compare([c * 2 for c in CLIENT]).violations()
    assert any("fewer than the" in f for f in found)
    assert any("outside [0, 0.02]" in f for f in found)


def test_an_engine_far_sooner_than_the_slack_is_found():
    # Milliseconds read as seconds twice over: every request in the first bucket.
    found = compare([c / 1000 for c in CLIENT]).violations()
    assert any("more than the" in f for f in found)
    assert any("the engine put it in (0, 0.001]s" in f for f in found)


def test_a_different_request_count_is_found_first():
    assert compare(CLIENT[:-1]).violations() == [
        "TTFT: the engine counted 9 requests, the client 10"
    ]


def test_bucket_bounds_must_ascend_to_inf():
    with pytest.raises(ValueError, match="ascend to \\+Inf"):
        Histogram(((0.1, 1.0), (0.05, 2.0), (math.inf, 2.0)), 0.1, 2)
    with pytest.raises(ValueError, match="ascend to \\+Inf"):
        Histogram(((0.1, 1.0),), 0.1, 1)


def test_rank_bucket_of_a_rank_beyond_the_count():
    with pytest.raises(ValueError, match="holds 10 requests, not 11"):
        histogram(CLIENT).rank_bucket(11)
