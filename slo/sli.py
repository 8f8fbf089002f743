"""SLIs, error budgets and burn rates of SLO specs, from Prometheus.

The math is the generated rules' (`alerts/slo_rules.py`), read two ways:

- **recording rules**, when Prometheus evaluates the SLO's rule group: the SLO's
  `slo:objective:ratio` series is present and states the spec's objective. Then the error ratio
  over the period is `slo:sli_error:ratio_rate<period>` and each window's burn rate
  `slo:burn_rate:ratio_rate<window>`, one query per window for every SLO at once;
- **raw series** otherwise: the same expressions the rules record
  (`alerts.queries.error_ratio` / `fraction_at_most` over `by (namespace, deployment)`),
  sent once per window for every SLO of the same shape (SLI type, finish reasons or
  histogram and threshold, engine, models) and read per namespace and deployment, so the
  number of queries grows with the kinds of SLO, not with the deployments.

For every SLO: the SLI (good ratio) and error ratio over its period, the error budget left as a
fraction and as time, when it runs out at the current (1h) burn rate, the burn rate over every
window of `alerts/burn_rate_windows.yaml`, and which multiwindow alerts would fire now (both
windows of a row over its factor; the alerts' `for:` is not applied).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql, windows
from inferwatch.alerts import queries as q
from inferwatch.alerts.promql import Matcher
from inferwatch.slo.models import AlertState, BurnWindow, SLOStatus
from inferwatch.slo.prom import Deadline, Prometheus, Query, Sample
from inferwatch.slo.spec import AvailabilitySLI, LatencySLI, SLOSpec

BUDGET_WINDOW = "1h"  # the burn rate that estimates when the budget runs out


def burn_windows(spec: SLOSpec) -> tuple[str, ...]:
    """Every window the alerts read, then the SLO's period."""
    return (*windows.needed(), spec.period)


def budget(spec: SLOSpec) -> float:
    """The error budget as PromQL computes `(1 - 0.999)`, so both agree to the last bit."""
    return 1 - spec.objective


def burn_rate(error_ratio: float | None, spec: SLOSpec) -> float | None:
    return None if error_ratio is None else error_ratio / budget(spec)


def budget_remaining(error_ratio: float | None, spec: SLOSpec) -> float | None:
    """1 - the share of the budget spent over the period (negative once overspent)."""
    burn = burn_rate(error_ratio, spec)
    return None if burn is None else 1 - burn


def remaining_seconds(remaining: float | None, spec: SLOSpec) -> float | None:
    """The remaining budget as time: how long a total outage it still allows."""
    if remaining is None:
        return None
    return remaining * budget(spec) * spec.period_days * 86400


def exhaustion_seconds(remaining: float | None, burn: float | None, spec: SLOSpec) -> float | None:
    """At burn rate `burn`, when the remaining budget is spent (None: never, at this rate)."""
    if remaining is None or burn is None or burn <= 0:
        return None
    return max(0.0, remaining) * spec.period_days * 86400 / burn


def alert_states(burns: dict[str, float | None], spec: SLOSpec) -> list[AlertState]:
    out = []
    for w in windows.WINDOWS:
        factor = float(w.factor(spec.period_days))
        long, short = burns.get(w.long), burns.get(w.short)
        firing = long is not None and short is not None and long > factor and short > factor
        out.append(
            AlertState(
                severity=w.severity, long=w.long, short=w.short, factor=factor, firing=firing
            )
        )
    return out


def sli_text(spec: SLOSpec) -> str:
    sli = spec.sli
    if isinstance(sli, AvailabilitySLI):
        return f"requests finishing without {' or '.join(sli.error_reasons)}"
    return f"{sli.metric} <= {promql.number(sli.threshold)} s"


# ---- raw series: one query per window and shape -----------------------------------------


def shape(spec: SLOSpec) -> tuple:
    """SLOs with equal shapes share their queries."""
    sli = spec.sli
    kind = (
        ("availability", sli.error_reasons)
        if isinstance(sli, AvailabilitySLI)
        else (
            "latency",
            sli.metric,
            sli.le,
        )
    )
    return (*kind, spec.engine, spec.models)


# Above this many deployments a group's query selects its namespaces only, and the answer is
# read per deployment: a regex of hundreds of names costs Prometheus more than the extra series.
MAX_NAMED_DEPLOYMENTS = 50


def _group_matchers(specs: Sequence[SLOSpec]) -> list[Matcher]:
    first = specs[0]
    out = [promql.one_of("namespace", sorted({s.namespace for s in specs}))]
    deployments = sorted({s.deployment for s in specs})
    if len(deployments) <= MAX_NAMED_DEPLOYMENTS:
        out.append(promql.one_of("deployment", deployments))
    if first.engine is not None:
        out.append(promql.eq("engine", first.engine))
    if first.models:
        out.append(promql.one_of("model", first.models))
    return out


def error_ratio_query(specs: Sequence[SLOSpec], window: str) -> str:
    """The error ratio of SLOs of one shape over `window`, per namespace and deployment: the
    expression `slo_rules.sli_error_ratio` records, with the group's matchers."""
    sli = specs[0].sli
    labels = c.DEPLOYMENT_LABELS
    matchers = _group_matchers(specs)
    if isinstance(sli, AvailabilitySLI):
        return q.error_ratio(labels, window, sli.error_reasons, *matchers)
    assert isinstance(sli, LatencySLI)
    good = q.fraction_at_most(sli.metric, sli.le, labels, window, *matchers)
    return "1 - (\n" + "\n".join("  " + line for line in good.splitlines()) + "\n)"


# ---- status ---------------------------------------------------------------------------


@dataclass
class _Read:
    source: str
    ratios: dict[str, float | None]  # window -> error ratio
    burns: dict[str, float | None]  # window -> burn rate
    queries: dict[str, str]


def _by_target(samples: Iterable[Sample]) -> dict[tuple[str, str], float]:
    return {
        (s.labels.get("namespace", ""), s.labels.get("deployment", "")): s.value
        for s in samples
        if not math.isnan(s.value)
    }


def _by_slo(samples: Iterable[Sample]) -> dict[tuple[str, str, str], float]:
    return {
        (
            s.labels.get(c.SLO, ""),
            s.labels.get("namespace", ""),
            s.labels.get("deployment", ""),
        ): s.value
        for s in samples
        if not math.isnan(s.value)
    }


def statuses(
    specs: Sequence[SLOSpec],
    prom: Prometheus,
    deadline: Deadline,
    at: float,
    with_queries: bool = True,
) -> list[SLOStatus]:
    """The status of every SLO, in the specs' order. `with_queries=False` leaves out each
    SLO's PromQL texts (building them for a thousand SLOs costs more than reading them)."""
    if not specs:
        return []
    recorded = _recorded_slos(specs, prom, deadline, at)
    reads: dict[str, _Read] = {}
    with_rules = [s for s in specs if s.name in recorded]
    raw = [s for s in specs if s.name not in recorded]
    batch: dict[str, Query] = {}
    wanted_windows = sorted({w for s in with_rules for w in burn_windows(s)}, key=promql.seconds)
    for w in wanted_windows:
        batch[f"burn/{w}"] = Query(
            promql.series(c.slo_burn_rate(w), promql.Matcher(c.SLO, "!=", "")), at
        )
    for period in sorted({s.period for s in with_rules}):
        batch[f"ratio/{period}"] = Query(
            promql.series(c.slo_error_ratio(period), promql.Matcher(c.SLO, "!=", "")), at
        )
    groups: dict[tuple, list[SLOSpec]] = defaultdict(list)
    for s in raw:
        groups[shape(s)].append(s)
    group_list = list(groups.values())
    for i, group in enumerate(group_list):
        for w in sorted({w for s in group for w in burn_windows(s)}, key=promql.seconds):
            batch[f"raw/{i}/{w}"] = Query(error_ratio_query(group, w), at)
    results = prom.batch(batch, deadline)
    by_slo = {k: _by_slo(v) for k, v in results.items() if not k.startswith("raw/")}  # type: ignore[arg-type]
    by_target = {k: _by_target(v) for k, v in results.items() if k.startswith("raw/")}  # type: ignore[arg-type]

    for s in with_rules:
        key = (s.name, s.namespace, s.deployment)
        burns = {w: by_slo[f"burn/{w}"].get(key) for w in burn_windows(s)}
        ratios = {w: (None if b is None else b * budget(s)) for w, b in burns.items()}
        ratios[s.period] = by_slo[f"ratio/{s.period}"].get(key)
        this = promql.selector(promql.eq(c.SLO, s.name))
        reads[s.name] = _Read(
            "recording-rules",
            ratios,
            burns,
            {
                f"error_ratio/{s.period}": c.slo_error_ratio(s.period) + this,
                **{f"burn_rate/{w}": c.slo_burn_rate(w) + this for w in burn_windows(s)},
            }
            if with_queries
            else {},
        )
    for i, group in enumerate(group_list):
        for s in group:
            target = (s.namespace, s.deployment)
            ratios = {w: by_target[f"raw/{i}/{w}"].get(target) for w in burn_windows(s)}
            reads[s.name] = _Read(
                "raw-series",
                ratios,
                {w: burn_rate(r, s) for w, r in ratios.items()},
                {f"error_ratio/{w}": error_ratio_query([s], w) for w in burn_windows(s)}
                if with_queries
                else {},
            )
    return [_status(s, reads[s.name], s.name in recorded or None) for s in specs]


def _recorded_slos(
    specs: Sequence[SLOSpec], prom: Prometheus, deadline: Deadline, at: float
) -> set[str]:
    """SLOs whose rule group Prometheus evaluates with the spec's own objective."""
    found = prom.instant(
        promql.series(c.SLO_OBJECTIVE, promql.Matcher(c.SLO, "!=", "")), at, deadline
    )
    objectives = _by_slo(found)
    out = set()
    for s in specs:
        stated = objectives.get((s.name, s.namespace, s.deployment))
        if stated is not None and math.isclose(stated, s.objective, rel_tol=1e-12):
            out.add(s.name)
    return out


def _status(spec: SLOSpec, read: _Read, _recorded: bool | None) -> SLOStatus:
    ratio = read.ratios.get(spec.period)
    remaining = budget_remaining(ratio, spec)
    burn_1h = read.burns.get(BUDGET_WINDOW)
    alerts = alert_states(read.burns, spec)
    firing = sorted({a.severity for a in alerts if a.firing}, key=lambda sev: sev != c.CRITICAL)
    note = ""
    if ratio is None:
        note = (
            f"no finished requests of {spec.namespace}/{spec.deployment} in the {spec.period} "
            "period: nothing to measure yet"
        )
    return SLOStatus(
        name=spec.name,
        description=spec.description,
        namespace=spec.namespace,
        deployment=spec.deployment,
        sli=sli_text(spec),
        objective=spec.objective,
        period=spec.period,
        source=read.source,  # type: ignore[arg-type]
        sli_value=None if ratio is None else 1 - ratio,
        error_ratio=ratio,
        error_budget=budget(spec),
        budget_remaining=remaining,
        budget_remaining_seconds=remaining_seconds(remaining, spec),
        exhaustion_seconds=exhaustion_seconds(remaining, burn_1h, spec),
        burn_rates=[
            BurnWindow(window=w, error_ratio=read.ratios.get(w), burn_rate=read.burns.get(w))
            for w in burn_windows(spec)
        ],
        alerts=alerts,
        firing=firing,
        queries=read.queries,
        note=note,
    )
