"""SLOs: objective, SLI, error budget remaining and burn rates, from the SLO recording rules.

Every series here is recorded by the rules `inferwatch alerts build` generates from SLO specs;
their names come from `inferwatch.alerts.conventions`. The windows are whatever the rules
record: SLI and burn-rate panels select every `..._ratio_rate<window>` series by name and show
the window as a label, so a change of windows in the rules needs no change here.
"""

from __future__ import annotations

from typing import Any

from inferwatch.alerts import conventions as C
from inferwatch.dashboards import style as S
from inferwatch.dashboards.promql import Scope, eq, regex

UID = "inferwatch-slo"
TITLE = "inferwatch / SLOs"

SCOPE = Scope((eq("namespace"), regex("slo")))
SLO_GROUP = C.SLO_LABELS  # slo, namespace, deployment
LEGEND = "{{slo}}"
_WINDOW_LABEL = "window"

VARIABLES = (
    S.Variable("namespace", "Namespace", f"label_values({C.SLO_OBJECTIVE}, namespace)"),
    S.Variable(
        "slo",
        "SLO",
        f'label_values({C.SLO_OBJECTIVE}{{namespace="$namespace"}}, slo)',
        multi=True,
        include_all=True,
    ),
)

# Budget left: red once spent, amber under a quarter.
BUDGET = S.steps((S.BAD, None), (S.WARN, 0), (S.GOOD, 0.25))
# Burn rate 1 spends the budget exactly over the period; above it the budget runs out early.
BURN = S.steps((S.GOOD, None), (S.WARN, 1))


NEEDS_RULES = (
    "Recorded by the SLO rules that `inferwatch alerts build` generates from the SLO specs; "
    "empty until those rules are loaded."
)


def _prefix(name_for_window: Any) -> str:
    """The part of a per-window series name before the window (`slo:burn_rate:ratio_rate`)."""
    return name_for_window("WINDOW").removesuffix("WINDOW")


def per_window(name_for_window: Any, scope: Scope) -> str:
    """Every recorded window of a per-window SLO series, the window as a `window` label."""
    prefix = _prefix(name_for_window)
    series = scope.sel(f'__name__=~"{prefix}.+"')
    return f'label_replace({series}, "{_WINDOW_LABEL}", "$1", "__name__", "{prefix}(.+)")'


def status_table(scope: Scope) -> S.Panel:
    """Each SLO's objective, period, budget remaining and fastest burn: the fleet shows it too."""

    def instant(expr: str) -> S.Query:
        return S.Query(expr, instant=True, format="table")

    worst_burn = f"max by ({', '.join(SLO_GROUP)}) ({per_window(C.slo_burn_rate, scope)})"
    return S.table(
        "SLOs",
        "Each SLO's objective, the error budget left in its period, and its fastest burn "
        f"rate over the recorded windows. {NEEDS_RULES}",
        [("slo", "SLO"), ("namespace", "Namespace"), ("deployment", "Deployment")],
        [
            S.Column("Objective", instant(f"{C.SLO_OBJECTIVE}{scope.sel()}"), S.RATIO),
            S.Column("Period (days)", instant(f"{C.SLO_PERIOD_DAYS}{scope.sel()}"), S.NONE),
            S.Column(
                "Error budget remaining",
                instant(f"{C.SLO_ERROR_BUDGET_REMAINING}{scope.sel()}"),
                S.RATIO,
                BUDGET,
            ),
            S.Column("Fastest burn rate", instant(worst_burn), S.NONE, BURN),
        ],
        h=6,
        sort_by="Fastest burn rate",
    )


def _status() -> S.Row:
    return S.Row("Status", [status_table(SCOPE)])


def _budget() -> S.Row:
    return S.Row(
        "Error budget",
        [
            S.timeseries(
                "Error budget remaining",
                "Share of the period's error budget not yet spent (negative once "
                f"overspent). {NEEDS_RULES}",
                [S.Query(f"{C.SLO_ERROR_BUDGET_REMAINING}{SCOPE.sel()}", LEGEND)],
                S.RATIO,
                min_value=None,
                thresholds=BUDGET,
            ),
            S.timeseries(
                "SLI by window",
                "Share of good events (requests that finished without error, or under the "
                f"latency threshold) over each recorded window, against the objective. "
                f"{NEEDS_RULES}",
                [
                    S.Query(
                        f"1 - {per_window(C.slo_error_ratio, SCOPE)}",
                        f"{LEGEND} {{{{{_WINDOW_LABEL}}}}}",
                    ),
                    S.Query(f"{C.SLO_OBJECTIVE}{SCOPE.sel()}", f"{LEGEND} objective"),
                ],
                S.RATIO,
                min_value=None,
            ),
        ],
    )


def _burn() -> S.Row:
    return S.Row(
        "Burn rates",
        [
            S.timeseries(
                "Burn rate by window",
                "Error ratio over each window divided by the error budget (1 - objective). "
                "At 1 the budget lasts exactly the period; multiwindow alerts fire when a "
                f"short and a long window both burn fast. {NEEDS_RULES}",
                [
                    S.Query(
                        per_window(C.slo_burn_rate, SCOPE),
                        f"{LEGEND} {{{{{_WINDOW_LABEL}}}}}",
                    )
                ],
                S.NONE,
                w=24,
                thresholds=BURN,
                legend_table=True,
            ),
        ],
    )


def build() -> dict[str, Any]:
    return S.dashboard(
        uid=UID,
        title=TITLE,
        description="Service level objectives of the inference deployments: objective, SLI, "
        "error budget remaining and burn rates per window.",
        variables=VARIABLES,
        rows=[_status(), _budget(), _burn()],
    )
