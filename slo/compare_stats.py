"""The statistics of the canary comparison: a few distribution functions and one-sided tests.

No scipy: the comparison needs Student's t (its survival function and quantiles), through the
regularized incomplete beta function, computed here by its continued fraction.

Every test is one-sided and asks one question: is the candidate *worse* than the baseline?
An improvement is never a reason to roll back, so it never makes a test significant.

    >>> round(t_sf(2.228, 10), 4)  # the 97.5th percentile of t with 10 degrees of freedom
    0.025
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    return _betainc(a, b, x, 1.0 - x)


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with y = 1 - x given as computed by the caller (t_sf's x is 1 - t^2/(df+t^2):
    computing y from x would lose its digits when x is close to 1).

    The continued fraction of I_x(a, b) converges quickly for x < (a + 1) / (a + b + 2); above
    that, I_x(a, b) = 1 - I_y(b, a) keeps it there. Evaluated by the modified Lentz method.
    """
    if x <= 0.0 or y >= 1.0:
        return 0.0
    if y <= 0.0 or x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, y, x)
    log_front = (
        a * math.log(x)
        + b * math.log(y)
        - math.log(a)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    # 1 + d1/(1 + d2/(1 + ...)), with d_2m+1 = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and
    # d_2m = m(b-m)x / ((a+2m-1)(a+2m)).
    f, c, d = 1.0, 1.0, 0.0
    for j in range(1, _MAX_TERMS):
        m = j // 2
        if j % 2:
            term = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + term / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        f *= c * d
        if abs(c * d - 1.0) < _EPS:
            break
    return math.exp(log_front) / f


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (df may be fractional: Welch)."""
    if df <= 0:
        raise ValueError(f"Student's t needs df > 0, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on `t_sf` (monotone, so it cannot miss)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    low, high = -1.0, 1.0
    while t_sf(low, df) < 1.0 - p:
        low *= 2.0
    while t_sf(high, df) > 1.0 - p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_sf(mid, df) > 1.0 - p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, abs(mid)):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class TestResult:
    """A one-sided test that the candidate is worse: its statistic and p-value."""

    name: str
    statistic: float | None
    p_value: float
    df: float | None = None  # degrees of freedom, for t-tests


def welch(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int) -> TestResult:
    """Welch's t-test of H0: mean2 <= mean1 against mean2 > mean1 (unequal variances).

    A caller testing for a drop (a lower candidate is worse) swaps the signs of the means.
    """
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t-test needs at least two values in each group")
    se2 = var1 / n1 + var2 / n2
    diff = mean2 - mean1
    if se2 <= 0.0:
        # Both constant: any difference is certain, none is no evidence.
        return TestResult("Welch's t-test", None, 0.0 if diff > 0 else 1.0)
    t = diff / math.sqrt(se2)
    df = welch_df(var1, n1, var2, n2)
    return TestResult("Welch's t-test", t, t_sf(t, df), df)


def welch_df(var1: float, n1: int, var2: float, n2: int) -> float:
    """Welch-Satterthwaite degrees of freedom."""
    a, b = var1 / n1, var2 / n2
    denominator = (a * a) / (n1 - 1) + (b * b) / (n2 - 1)
    return (a + b) ** 2 / denominator if denominator > 0 else float(n1 + n2 - 2)


# ---- how sure: confidence bounds and the data a decision needs ------------------------------


@dataclass(frozen=True)
class Bound:
    """A difference in the bad direction (candidate worse when positive), its standard error
    and the one-sided critical value at the significance used."""

    difference: float
    se: float
    critical: float

    @property
    def upper(self) -> float:
        """The one-sided upper confidence bound of the difference."""
        return self.difference + self.critical * self.se

    def scale_to_pass(self, tolerance: float) -> float:
        """How many times the data the upper bound needs to fall under `tolerance`, if the
        difference stays what it is (the standard error shrinks as 1/sqrt(data)); inf when
        the difference itself is at or beyond the tolerance."""
        if self.upper < tolerance:
            return 1.0
        if self.difference >= tolerance:
            return math.inf
        return (self.critical * self.se / (tolerance - self.difference)) ** 2

    def scale_to_significance(self) -> float:
        """How many times the data a positive difference needs to become significant."""
        if self.difference <= 0:
            return math.inf
        if self.se <= 0:
            return 1.0
        return max(1.0, (self.critical * self.se / self.difference) ** 2)


@dataclass(frozen=True)
class Ratio:
    """x / n summed over blocks (the window's steps), with a standard error that holds when
    observations within a block are correlated: a burst of slow requests, a preemption storm.
    The blocks, not the requests, are taken as independent (a cluster-robust, or batch-means,
    variance of a ratio estimator)."""

    x: float
    n: float
    blocks: int
    variance: float

    @property
    def estimate(self) -> float:
        return self.x / self.n


def ratio(blocks: Iterable[tuple[float, float]]) -> Ratio | None:
    """The ratio of per-block (x, n) sums; None without two blocks or any n."""
    pairs = list(blocks)
    m = len(pairs)
    x, n = math.fsum(p[0] for p in pairs), math.fsum(p[1] for p in pairs)
    if m < 2 or n <= 0:
        return None
    r = x / n
    spread = math.fsum((xi - r * ni) ** 2 for xi, ni in pairs)
    return Ratio(x, n, m, m / (m - 1) * spread / (n * n))


def binomial_floor(x: float, n: float) -> float:
    """The least variance a proportion x/n is given: binomial, with one success and one failure
    added (Agresti-Caffo), so that 0 of n is not taken as certainty."""
    q = (x + 1.0) / (n + 2.0)
    return q * (1.0 - q) / (n + 2.0)


def poisson_floor(k: float, n: float) -> float:
    """The least variance a rate of k events over n is given: Poisson, half an event added."""
    return (k + 0.5) / (n * n)


def compare_ratios(
    r1: Ratio, r2: Ratio, floor1: float, floor2: float, alpha: float, name: str
) -> tuple[TestResult, Bound]:
    """One-sided test of H0: r2 <= r1, and the bound of r2 - r1, with each variance the larger
    of its cluster-robust estimate and its floor. Student's t with one degree of freedom less
    than the fewer blocks, since the variances come from the blocks."""
    se = math.sqrt(max(r1.variance, floor1) + max(r2.variance, floor2))
    df = float(min(r1.blocks, r2.blocks) - 1)
    difference = r2.estimate - r1.estimate
    if se <= 0:
        p = 0.0 if difference > 0 else 1.0
        return TestResult(name, None, p, df), Bound(difference, 0.0, 0.0)
    t = difference / se
    return TestResult(name, t, t_sf(t, df), df), Bound(difference, se, t_quantile(1 - alpha, df))


def means_bound(
    mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int, alpha: float
) -> Bound:
    """mean2 - mean1 with Welch's standard error and the t critical value at its df."""
    se = math.sqrt(max(0.0, var1 / n1 + var2 / n2))
    critical = t_quantile(1.0 - alpha, welch_df(var1, n1, var2, n2)) if se > 0 else 0.0
    return Bound(mean2 - mean1, se, critical)
