"""The burn-rate window table (`burn_rate_windows.yaml`), its derived factors, and their checks.

A factor is exact arithmetic on the table (fractions, not floats): the share of the error
budget a row allows to be spent within its long window, scaled to the period.

    >>> [str(w.factor(30)) for w in WINDOWS]
    ['72/5', '6', '3', '1']
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from inferwatch.alerts import conventions, promql

TABLE = Path(__file__).with_name("burn_rate_windows.yaml")
PERIOD_DAYS = (28, 30)


@dataclass(frozen=True)
class Window:
    severity: str
    long: str
    short: str
    budget_consumed: Fraction
    for_: str

    def factor(self, period_days: int) -> Fraction:
        """How many times faster than sustainable the budget burns when this row fires."""
        return self.budget_consumed * period_days * 86400 / promql.seconds(self.long)

    def threshold(self, period_days: int) -> str:
        """The factor as PromQL text."""
        return decimal_text(self.factor(period_days))


def decimal_text(value: Fraction) -> str:
    """A fraction as decimal text: exact when it terminates (`14.4`), else to 4 places."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        return format(exact.normalize(), "f")
    return format(round(Decimal(value.numerator) / Decimal(value.denominator), 4), "f")


class TableError(ValueError):
    """The window table breaks one of the rules multiwindow alerts depend on."""


def load(path: Path = TABLE) -> tuple[Window, ...]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    windows = []
    try:
        for severity, spec in data["severities"].items():
            for row in spec["windows"]:
                windows.append(
                    Window(
                        severity=severity,
                        long=promql.validate_duration(row["long"]),
                        short=promql.validate_duration(row["short"]),
                        budget_consumed=Fraction(str(row["budget_consumed"])),
                        for_=promql.validate_duration(spec["for"]),
                    )
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise TableError(f"{path}: malformed window table: {exc!r}") from None
    validate(windows)
    return tuple(windows)


def validate(windows: list[Window] | tuple[Window, ...]) -> None:
    """Refuse a table whose alerts would not behave as multiwindow burn-rate alerts should."""
    if not windows:
        raise TableError("the window table is empty")
    order = {conventions.CRITICAL: 0, conventions.WARNING: 1}
    for w in windows:
        where = f"{w.severity} {w.long}/{w.short}"
        if w.severity not in order:
            raise TableError(f"{where}: severity must be critical (page) or warning (ticket)")
        if not 0 < w.budget_consumed <= 1:
            raise TableError(f"{where}: budget_consumed must be in (0, 1]")
        if promql.seconds(w.short) * 12 != promql.seconds(w.long):
            raise TableError(f"{where}: the short window must be 1/12 of the long one")
        if promql.seconds(w.long) > min(PERIOD_DAYS) * 86400:
            raise TableError(f"{where}: the long window exceeds the SLO period")
        for days in PERIOD_DAYS:
            text = w.threshold(days)
            if abs(Fraction(text) - w.factor(days)) > w.factor(days) * Fraction(1, 10_000):
                raise TableError(f"{where}: factor {w.factor(days)} cannot be written exactly")
    ranked = sorted(windows, key=lambda w: (order[w.severity], promql.seconds(w.long)))
    if list(windows) != ranked:
        raise TableError("list pages before tickets, and each severity's windows shortest first")
    for a, b in itertools.pairwise(ranked):
        # A longer window must need a lower burn rate, or it would never fire first.
        if b.factor(30) >= a.factor(30):
            raise TableError(
                f"{b.severity} {b.long}: factor {b.factor(30)} is not below the "
                f"{a.severity} {a.long} factor {a.factor(30)}"
            )


def needed() -> tuple[str, ...]:
    """Every window the alerts read, shortest first."""
    names = {w.long for w in WINDOWS} | {w.short for w in WINDOWS}
    return tuple(sorted(names, key=promql.seconds))


def by_severity() -> dict[str, tuple[Window, ...]]:
    out: dict[str, list[Window]] = {}
    for w in WINDOWS:
        out.setdefault(w.severity, []).append(w)
    return {k: tuple(v) for k, v in out.items()}


WINDOWS: tuple[Window, ...] = load()
