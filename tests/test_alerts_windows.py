"""Burn-rate math: factors derived from the window table, checked against hand-computed values.

The rules' behaviour in Prometheus is tested by tests/promtool/slo-*.test.yaml; these tests
pin the arithmetic the rules are generated from.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from inferwatch.alerts import slo_rules, windows
from inferwatch.slo import spec as slo_spec


def test_30_day_factors_are_the_sre_workbooks() -> None:
    # budget share * period / window: 2% * 720h / 1h, 5% * 720h / 6h, 10% * 30d / 1d, 10% * 30d / 3d
    assert [w.factor(30) for w in windows.WINDOWS] == [
        Fraction("14.4"),
        Fraction(6),
        Fraction(3),
        Fraction(1),
    ]
    assert [w.threshold(30) for w in windows.WINDOWS] == ["14.4", "6", "3", "1"]


def test_28_day_factors_keep_the_budget_shares() -> None:
    assert [w.factor(28) for w in windows.WINDOWS] == [
        Fraction("13.44"),
        Fraction("5.6"),
        Fraction("2.8"),
        Fraction(14, 15),
    ]
    assert [w.threshold(28) for w in windows.WINDOWS] == ["13.44", "5.6", "2.8", "0.9333"]


@pytest.mark.parametrize(
    ("error_ratio", "objective", "pages", "tickets"),
    [
        # 2% errors against a 0.1% budget: 20x, over both page thresholds.
        (Fraction("0.02"), Fraction("0.999"), True, True),
        # 0.2% errors: 2x, under every page threshold; over the 3d/6h ticket's 1x.
        (Fraction("0.002"), Fraction("0.999"), False, True),
        # 0.4%: 4x, a ticket (over 3x) and no page (under 6x).
        (Fraction("0.004"), Fraction("0.999"), False, True),
        # 0.09%: 0.9x, nothing.
        (Fraction("0.0009"), Fraction("0.999"), False, False),
        # 10% errors against a 1% budget: 10x: the 6h/30m page (6x), not the 1h/5m one (14.4x).
        (Fraction("0.1"), Fraction("0.99"), True, True),
    ],
)
def test_steady_error_ratios_against_hand_computed_outcomes(
    error_ratio: Fraction, objective: Fraction, pages: bool, tickets: bool
) -> None:
    """A ratio held long enough that every window reads it: which severities fire."""
    burn = error_ratio / (1 - objective)
    fired = {w.severity for w in windows.WINDOWS if burn > w.factor(30)}
    assert ("critical" in fired) is pages
    assert ("warning" in fired) is tickets


def test_windows_the_alerts_read() -> None:
    assert windows.needed() == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def test_decimal_text_has_no_float_noise() -> None:
    assert windows.decimal_text(Fraction(72, 5)) == "14.4"
    assert windows.decimal_text(Fraction(6)) == "6"
    assert windows.decimal_text(Fraction(14, 15)) == "0.9333"
    assert windows.decimal_text(Fraction("0.001")) == "0.001"


def write_table(path: Path, rows: str, for_: str = "2m") -> Path:
    path.write_text(
        f"severities:\n  critical:\n    for: {for_}\n    windows:\n{rows}"
        "  warning:\n    for: 15m\n    windows:\n"
        '      - {long: 1d, short: 2h, budget_consumed: "0.10"}\n'
    )
    return path


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ('      - {long: 1h, short: 10m, budget_consumed: "0.02"}\n', "1/12 of the long one"),
        ('      - {long: 1h, short: 5m, budget_consumed: "1.5"}\n', "must be in (0, 1]"),
        ('      - {long: 40d, short: 80h, budget_consumed: "0.5"}\n', "exceeds the SLO period"),
        (
            '      - {long: 6h, short: 30m, budget_consumed: "0.05"}\n'
            '      - {long: 1h, short: 5m, budget_consumed: "0.02"}\n',
            "shortest first",
        ),
        ('      - {long: 1h, short: 5m, budget_consumed: "0.001"}\n', "is not below"),
        ("      - {long: 1h, short: 5m}\n", "malformed window table"),
        ('      - {long: soon, short: 5m, budget_consumed: "0.02"}\n', "malformed window table"),
    ],
)
def test_a_broken_table_is_refused(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(windows.TableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        windows.load(write_table(tmp_path / "w.yaml", rows))


def test_the_shipped_table_is_valid() -> None:
    windows.validate(windows.load())


@pytest.mark.parametrize(
    ("objective", "period", "refused"),
    [("0.95", "30d", False), ("0.93", "30d", True), ("0.9306", "30d", False), ("0.9", "28d", True)],
)
def test_objectives_that_make_a_page_unreachable_are_refused(
    objective: str, period: str, refused: bool
) -> None:
    (spec,) = slo_spec.parse(
        "slos:\n  - {name: x, namespace: llm, deployment: d, sli: {type: availability}, "
        f"objective: {objective}, period: {period}}}\n"
    )
    if refused:
        with pytest.raises(slo_rules.UnreachableAlert, match="cannot happen"):
            slo_rules.check_reachable(spec)
    else:
        slo_rules.check_reachable(spec)
