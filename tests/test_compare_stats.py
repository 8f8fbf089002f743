"""The comparison's statistics against values computed another way: closed forms of the beta
and t distributions, sums of binomial probabilities, textbook t-table values, numerical
integration; and the block-based test's calibration on bursty data, where a test that takes
requests as independent is not calibrated."""

from __future__ import annotations

import math
import random

import pytest

from inferwatch.slo import compare_stats as st


@pytest.mark.parametrize("x", [0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 7.5])
def test_incomplete_beta_matches_its_closed_forms(x: float, a: float) -> None:
    assert st.betainc(a, 1.0, x) == pytest.approx(x**a, abs=1e-13)
    assert st.betainc(1.0, a, x) == pytest.approx(1 - (1 - x) ** a, abs=1e-13)
    assert st.betainc(2.0, 2.0, x) == pytest.approx(3 * x**2 - 2 * x**3, abs=1e-13)
    # Symmetry, and the middle of a symmetric beta.
    assert st.betainc(a, 3.0, x) == pytest.approx(1 - st.betainc(3.0, a, 1 - x), abs=1e-13)
    assert st.betainc(a, a, 0.5) == pytest.approx(0.5, abs=1e-13)


@pytest.mark.parametrize(("n", "p"), [(20, 0.05), (20, 0.5), (57, 0.31), (400, 0.012)])
def test_incomplete_beta_gives_binomial_tails(n: int, p: float) -> None:
    """P(X >= k) for X ~ Binomial(n, p) is I_p(k, n - k + 1): checked against the sum."""
    for k in range(1, n + 1, max(1, n // 15)):
        direct = math.fsum(
            math.exp(math.log(math.comb(n, i)) + i * math.log(p) + (n - i) * math.log1p(-p))
            for i in range(k, n + 1)
        )
        assert st.betainc(k, n - k + 1, p) == pytest.approx(direct, rel=1e-9)


def test_incomplete_beta_refuses_what_it_is_not_defined_for() -> None:
    with pytest.raises(ValueError, match="a, b > 0"):
        st.betainc(0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        st.betainc(1.0, 1.0, 1.5)


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 1.0, 3.3, 12.706, 250.0])
def test_t_survival_matches_the_closed_forms_of_one_and_two_degrees(t: float) -> None:
    cauchy = 0.5 - math.atan(t) / math.pi
    assert st.t_sf(t, 1) == pytest.approx(cauchy, rel=1e-10, abs=1e-15)
    two = 0.5 - t / (2 * math.sqrt(t * t + 2))
    assert st.t_sf(t, 2) == pytest.approx(two, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize(
    ("p", "df", "table"),
    # Two-sided 5% and 1%, one-sided 5%: the t table of any statistics textbook.
    [
        (0.975, 1, 12.706),
        (0.975, 5, 2.571),
        (0.995, 5, 4.032),
        (0.975, 10, 2.228),
        (0.95, 10, 1.812),
        (0.95, 20, 1.725),
        (0.975, 30, 2.042),
        (0.975, 120, 1.980),
    ],
)
def test_t_quantiles_are_the_table_values(p: float, df: int, table: float) -> None:
    assert st.t_quantile(p, df) == pytest.approx(table, abs=6e-4)
    assert st.t_sf(table, df) == pytest.approx(1 - p, rel=2e-3)


def test_t_tends_to_the_normal_distribution() -> None:
    # At a million degrees of freedom t differs from the normal by about (z^4 + 2z^2)/(4 df).
    for z in (0.5, 1.0, 1.959964, 3.0):
        assert st.t_sf(z, 1e6) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=3e-5)
    assert st.t_sf(math.inf, 3) == 0.0
    assert st.t_sf(-math.inf, 3) == 1.0
    with pytest.raises(ValueError, match="0 < p < 1"):
        st.t_quantile(1.0, 5)


def _t_sf_by_integration(t: float, df: float) -> float:
    """P(T > t) by Simpson's rule on the density, for fractional degrees of freedom."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def pdf(x: float) -> float:
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    # Substitute x = t + u / (1 - u) to integrate to infinity over u in [0, 1).
    steps = 20000
    h = 1.0 / steps
    total = 0.0
    for i in range(steps + 1):
        u = min(i * h, 1 - 1e-12)
        weight = 1 if i in (0, steps) else 4 if i % 2 else 2
        total += weight * pdf(t + u / (1 - u)) / (1 - u) ** 2
    return total * h / 3


def test_welch_matches_a_hand_computed_example() -> None:
    """Baseline mean 10 (variance 4, 10 values), candidate mean 12 (variance 9, 12 values):
    SE^2 = 4/10 + 9/12 = 1.15, t = 2/sqrt(1.15) = 1.86501, Welch-Satterthwaite
    df = 1.15^2 / (0.4^2/9 + 0.75^2/11) = 19.1906."""
    result = st.welch(10.0, 4.0, 10, 12.0, 9.0, 12)
    assert result.statistic == pytest.approx(1.865010, rel=1e-6)
    assert result.df == pytest.approx(19.19055, rel=1e-5)
    assert result.p_value == pytest.approx(_t_sf_by_integration(1.865010, 19.19055), rel=1e-6)
    # One-sided: the same difference the other way is no evidence of a worse candidate.
    assert st.welch(12.0, 9.0, 12, 10.0, 4.0, 10).p_value == pytest.approx(1 - result.p_value)
    # Constant values: a difference is certain, none is no evidence.
    assert st.welch(1.0, 0.0, 5, 2.0, 0.0, 5).p_value == 0.0
    assert st.welch(1.0, 0.0, 5, 1.0, 0.0, 5).p_value == 1.0
    with pytest.raises(ValueError, match="two values"):
        st.welch(1.0, 1.0, 1, 1.0, 1.0, 5)


def test_the_ratio_of_blocks_has_a_cluster_robust_variance() -> None:
    """Blocks (1 of 10), (3 of 10): r = 0.2; residuals 1 - 2 and 3 - 2; variance
    m/(m-1) * 2 / 20^2 = 0.01."""
    r = st.ratio([(1.0, 10.0), (3.0, 10.0)])
    assert r is not None
    assert (r.x, r.n, r.blocks, r.estimate) == (4.0, 20.0, 2, 0.2)
    assert r.variance == pytest.approx(0.01)
    assert st.ratio([(1.0, 10.0)]) is None  # one block: no spread to measure
    assert st.ratio([(0.0, 0.0), (0.0, 0.0)]) is None


def test_compare_ratios_uses_the_larger_of_the_two_variances() -> None:
    steady = st.ratio([(5.0, 100.0)] * 10)  # no spread at all: the floor takes over
    worse = st.ratio([(8.0, 100.0)] * 10)
    assert steady is not None and worse is not None
    assert steady.variance == 0.0
    floor1, floor2 = st.binomial_floor(50, 1000), st.binomial_floor(80, 1000)
    test, bound = st.compare_ratios(steady, worse, floor1, floor2, 0.05, "t")
    assert bound.difference == pytest.approx(0.03)
    assert bound.se == pytest.approx(math.sqrt(floor1 + floor2))
    assert test.df == 9
    assert test.statistic == pytest.approx(0.03 / bound.se)
    assert test.p_value == pytest.approx(st.t_sf(0.03 / bound.se, 9))
    assert bound.critical == pytest.approx(st.t_quantile(0.95, 9))
    # Agresti-Caffo: 0 of 1000 is not certainty.
    assert st.binomial_floor(0, 1000) == pytest.approx((1 / 1002) * (1001 / 1002) / 1002)
    assert st.poisson_floor(0, 100) == pytest.approx(0.5 / 10000)


def test_bounds_say_how_much_more_data_settles_a_difference() -> None:
    b = st.Bound(difference=0.01, se=0.02, critical=2.0)
    assert b.upper == pytest.approx(0.05)
    # Under a tolerance of 0.03 once the standard error halves: four times the data.
    assert b.scale_to_pass(0.03) == pytest.approx(4.0)
    four = st.Bound(0.01, 0.02 / math.sqrt(4.0), 2.0)
    assert four.upper == pytest.approx(0.03)
    assert b.scale_to_pass(0.06) == 1.0  # already under
    assert math.isinf(b.scale_to_pass(0.01))  # the difference itself is at the tolerance
    # A difference of 0.04 with SE 0.02 and critical 2.5 is significant at 1.5625 times.
    assert st.Bound(0.04, 0.02, 2.5).scale_to_significance() == pytest.approx(1.5625)
    assert math.isinf(st.Bound(-0.01, 0.02, 2.0).scale_to_significance())


def _bursty_blocks(rng: random.Random, blocks: int, per_block: int) -> list[tuple[float, float]]:
    """Blocks whose tail share is 5% on average but moves with bursts: one block in four has
    3.4 times the share, the others 0.2 times (a queue building up, then draining)."""
    out = []
    for _ in range(blocks):
        share = 0.05 * (3.4 if rng.random() < 0.25 else 0.2)
        x = sum(1 for _ in range(per_block) if rng.random() < share)
        out.append((float(x), float(per_block)))
    return out


def test_the_block_test_stays_calibrated_on_bursty_data_where_counting_requests_does_not() -> None:
    """Equal variants whose slow requests come in bursts: the block test rejects about as often
    as its significance says; a test taking the requests as independent (the binomial floor
    alone) rejects several times too often. This is why the comparison's standard errors come
    from the steps."""
    rng = random.Random(7)
    trials, alpha = 600, 0.05
    blocked = naive = 0
    for _ in range(trials):
        r1 = st.ratio(_bursty_blocks(rng, 30, 40))
        r2 = st.ratio(_bursty_blocks(rng, 30, 40))
        assert r1 is not None and r2 is not None
        f1, f2 = st.binomial_floor(r1.x, r1.n), st.binomial_floor(r2.x, r2.n)
        test, _bound = st.compare_ratios(r1, r2, f1, f2, alpha, "t")
        blocked += test.p_value < alpha
        z = (r2.estimate - r1.estimate) / math.sqrt(f1 + f2)
        naive += 0.5 * math.erfc(z / math.sqrt(2)) < alpha
    assert blocked / trials < alpha + 0.03
    assert naive / trials > 2 * alpha
