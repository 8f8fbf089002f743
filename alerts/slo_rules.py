"""SLO rules from SLO specs: SLI error ratios, burn rates, error budget, burn-rate alerts.

One group per SLO, in evaluation order (Prometheus evaluates a group's rules in sequence, so
each rule reads what the rules above it recorded in the same evaluation):

1. `slo:sli_requests:rate5m` and `slo:sli_errors:rate5m`: the SLI's events per second, from
   the raw series of the SLO's deployment;
2. `slo:sli_error:ratio_rate<w>` for every window the alerts need and for the period: for 5m
   the ratio of those two, for longer windows the ratio of their sums over the window
   (traffic-weighted, like a ratio of increases, but reading one series per SLO instead of
   every pod's raw samples, so a 30-day window costs the same on 10 pods or 1,000);
3. `slo:burn_rate:ratio_rate<w>`: that ratio over the error budget, written `(1 - 0.999)`;
4. `slo:objective:ratio`, `slo:period:days`, `slo:error_budget_remaining:ratio`;
5. the multiwindow multi-burn-rate alerts, one per severity of `burn_rate_windows.yaml`.

The long windows start with the rules: history from before them comes from backfilling the
two rate rules (`promtool tsdb create-blocks-from rules`, see docs/alerting.md).
`sli_error_ratio(spec, window)` is the SLI's PromQL over raw series for any window, which the
SLO service uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql, windows
from inferwatch.alerts import queries as q
from inferwatch.alerts.promql import Matcher
from inferwatch.alerts.rules import Alert, Group, Recording
from inferwatch.slo.spec import AvailabilitySLI, SLOSpec

_SEVERITY_WORDS = {c.CRITICAL: "page", c.WARNING: "ticket"}


class UnreachableAlert(ValueError):
    """An SLO whose objective makes one of its burn-rate alerts impossible to fire."""


def matchers(spec: SLOSpec) -> list[Matcher]:
    """The series of the SLO's deployment, engine and models."""
    out = [promql.eq("namespace", spec.namespace), promql.eq("deployment", spec.deployment)]
    if spec.engine is not None:
        out.append(promql.eq("engine", spec.engine))
    if spec.models:
        out.append(promql.one_of("model", spec.models))
    return out


def sli_error_ratio(spec: SLOSpec, window: str) -> str:
    """The SLI's error ratio over `window` from raw series, per namespace and deployment."""
    labels = c.DEPLOYMENT_LABELS
    sli = spec.sli
    if isinstance(sli, AvailabilitySLI):
        return q.error_ratio(labels, window, sli.error_reasons, *matchers(spec))
    good = q.fraction_at_most(sli.metric, sli.le, labels, window, *matchers(spec))
    return "1 - (\n" + _indent(good) + "\n)"


def sli_rates(spec: SLOSpec, window: str) -> tuple[str, str]:
    """The SLI's (bad, all) events per second over `window`, per namespace and deployment."""
    labels = c.DEPLOYMENT_LABELS
    sli = spec.sli
    if isinstance(sli, AvailabilitySLI):
        finished = "llm_requests_finished_total"
        total = q.rate_sum(finished, labels, window, *matchers(spec))
        errors = q.rate_sum(
            finished, labels, window, *matchers(spec), q.reasons_matcher(sli.error_reasons)
        )
        # An engine creates a reason's series when it first happens: none yet means zero.
        return f"{errors}\nor\n0 * {total}", total
    total = q.rate_sum(sli.metric, labels, window, *matchers(spec), suffix="_count")
    under = q.rate_sum(
        sli.metric, labels, window, *matchers(spec), promql.eq("le", sli.le), suffix="_bucket"
    )
    return f"{total}\n-\n{under}", total


def window_ratio(spec: SLOSpec, window: str) -> str:
    """`slo:sli_error:ratio_rate<window>` from the recorded rates."""
    this = promql.selector(promql.eq(c.SLO, spec.name))
    if window == c.RATE_WINDOW:
        return f"{c.SLO_ERRORS_RATE}{this}\n/\n{c.SLO_REQUESTS_RATE}{this}"
    return (
        f"sum_over_time({c.SLO_ERRORS_RATE}{this}[{window}])\n/\n"
        f"sum_over_time({c.SLO_REQUESTS_RATE}{this}[{window}])"
    )


def budget_text(spec: SLOSpec) -> str:
    """The error budget as readable PromQL: `(1 - 0.999)`, never 0.0010000000000000009."""
    return f"(1 - {promql.number(spec.objective)})"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _template_literal(text: str) -> str:
    """Free text inside an annotation template: `{{` and `}}` printed, never evaluated."""
    return re.sub(r"\{\{|\}\}", lambda m: '{{ "' + m.group(0) + '" }}', text)


def check_reachable(spec: SLOSpec) -> None:
    """Refuse an objective so low that a burn-rate alert would need more than 100% errors."""
    for w in windows.WINDOWS:
        needed = w.factor(spec.period_days) * (1 - _exact(spec.objective))
        if needed >= 1:
            lowest = 1 - 1 / w.factor(spec.period_days)
            raise UnreachableAlert(
                f"SLO {spec.name}: with objective {promql.number(spec.objective)} the "
                f"{_SEVERITY_WORDS[w.severity]} alert on a {w.threshold(spec.period_days)}x "
                f"burn over {w.long} would need an error ratio of "
                f"{windows.decimal_text(needed)}, which cannot happen; use an objective above "
                f"{windows.decimal_text(lowest)}"
            )


def _exact(value: float) -> Fraction:
    """The decimal the user wrote (0.999), exactly."""
    return Fraction(promql.number(value))


def slo_group(spec: SLOSpec) -> Group:
    check_reachable(spec)
    slo = {c.SLO: spec.name}
    this = promql.selector(promql.eq(c.SLO, spec.name))
    target = {c.SLO: spec.name, "namespace": spec.namespace, "deployment": spec.deployment}
    all_windows = (*windows.needed(), spec.period)
    if c.RATE_WINDOW not in all_windows:
        raise ValueError(f"the alerts must read the {c.RATE_WINDOW} window the rates are over")
    errors, total = sli_rates(spec, c.RATE_WINDOW)
    rules: list[Recording | Alert] = [
        Recording(c.SLO_REQUESTS_RATE, total, slo),
        Recording(c.SLO_ERRORS_RATE, errors, slo),
    ]
    rules += [Recording(c.slo_error_ratio(w), window_ratio(spec, w), slo) for w in all_windows]
    rules += [
        Recording(c.slo_burn_rate(w), f"{c.slo_error_ratio(w)}{this}\n/\n{budget_text(spec)}", slo)
        for w in all_windows
    ]
    rules += [
        Recording(c.SLO_OBJECTIVE, f"vector({promql.number(spec.objective)})", target),
        Recording(c.SLO_PERIOD_DAYS, f"vector({spec.period_days})", target),
        Recording(c.SLO_ERROR_BUDGET_REMAINING, f"1 - {c.slo_burn_rate(spec.period)}{this}", slo),
    ]
    rules += [burn_alert(spec, severity, rows) for severity, rows in windows.by_severity().items()]
    return Group(c.slo_group(spec.name), tuple(rules))


def burn_alert(spec: SLOSpec, severity: str, rows: Iterable[windows.Window]) -> Alert:
    rows = tuple(rows)
    this = promql.selector(promql.eq(c.SLO, spec.name))
    days = spec.period_days
    branches = [
        f"(\n  {c.slo_burn_rate(w.long)}{this} > {w.threshold(days)}\n  and\n"
        f"  {c.slo_burn_rate(w.short)}{this} > {w.threshold(days)}\n)"
        for w in rows
    ]
    thresholds = ", ".join(f"{w.threshold(days)}x over {w.long} and {w.short}" for w in rows)
    word = _SEVERITY_WORDS[severity]
    percent = windows.decimal_text(_exact(spec.objective) * 100)
    what = f" The SLO: {_template_literal(spec.description)}" if spec.description else ""
    return Alert(
        c.SLO_BUDGET_BURN,
        "\nor\n".join(branches),
        severity,
        f"An SLO is burning its error budget fast enough to {word}.",
        f"SLO {{{{ $labels.slo }}}} of {{{{ $labels.namespace }}}}/"
        f"{{{{ $labels.deployment }}}} is burning its {spec.period} error budget "
        f"{{{{ $value | humanize }}}}x faster than its objective of "
        f"{percent}% allows ({word} thresholds: {thresholds}).{what}",
        rows[0].for_,
        labels={c.SLO: spec.name, **spec.labels},
    )


def groups(specs: Iterable[SLOSpec]) -> tuple[Group, ...]:
    return tuple(slo_group(spec) for spec in specs)
