"""SLIs, error budgets and burn rates of SLO specs, from Prometheus.

The math is the generated rules' (`alerts/slo_rules.py`), read two ways:

- **recording rules**, when Prometheus evaluates the SLO's rule group: the SLO's
  `slo:objective:ratio` series is present and states the spec's objective. Then the error ratio
  over the period is `slo:sli_error:ratio_rate<period>` and each window's burn rate
  `slo:burn_rate:ratio_rate<window>`. One query reads them all, objectives included, for
  every SLO at once (narrowed to the SLOs' names and namespaces), so finding out which SLOs
  Prometheus evaluates costs nothing more;
- **raw series** otherwise (one more round, only for those SLOs): the same expressions the
  rules record (`alerts.queries.error_ratio` / `fraction_at_most` over
  `by (namespace, deployment)`), sent once per window for every SLO of the same shape (SLI
  type, finish reasons or histogram and threshold, engine, models) and read per namespace and
  deployment, so the number of queries grows with the kinds of SLO, not with the deployments.

For every SLO: the SLI (good ratio) and error ratio over its period, the error budget left as a
fraction and as time, when it runs out at the current (1h) burn rate, the burn rate over every
window of `alerts/burn_rate_windows.yaml`, and which multiwindow alerts would fire now (both
windows of a row over its factor; the alerts' `for:` is not applied).
"""

from __future__ import annotations

import functools
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
ALERT_WINDOWS = windows.needed()  # every window the alerts read, shortest first


def burn_windows(spec: SLOSpec) -> tuple[str, ...]:
    """Every window the alerts read, then the SLO's period."""
    return (*ALERT_WINDOWS, spec.period)


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


@functools.cache
def _factors(period_days: int) -> tuple[tuple[windows.Window, float], ...]:
    """Each alert window with its burn-rate factor over a period (exact fractions: computed
    once per period, not once per SLO)."""
    return tuple((w, float(w.factor(period_days))) for w in windows.WINDOWS)


def alert_states(burns: dict[str, float | None], spec: SLOSpec) -> list[AlertState]:
    out = []
    for w, factor in _factors(spec.period_days):
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


def recorded_query(specs: Sequence[SLOSpec]) -> str:
    """Every recorded series the status of these SLOs reads, in one query: each SLO's
    objective (whether Prometheus evaluates its rule group, and with this objective), its
    burn rate over every window and its error ratio over its period. Narrowed to the SLOs'
    names (or namespaces, for many), so its cost does not depend on the other SLOs Prometheus
    evaluates."""
    names = {c.SLO_OBJECTIVE}
    for spec in specs:
        names.update(c.slo_burn_rate(w) for w in burn_windows(spec))
        names.add(c.slo_error_ratio(spec.period))
    slos = sorted({s.name for s in specs})
    narrow = (
        promql.one_of(c.SLO, slos)
        if len(slos) <= MAX_NAMED_DEPLOYMENTS
        else promql.Matcher(c.SLO, "!=", "")
    )
    return promql.selector(
        promql.one_of("__name__", sorted(names)),
        narrow,
        promql.one_of("namespace", sorted({s.namespace for s in specs})),
    )


def statuses(
    specs: Sequence[SLOSpec],
    prom: Prometheus,
    deadline: Deadline,
    at: float,
    with_queries: bool = True,
    recorded: bool = True,
) -> list[SLOStatus]:
    """The status of every SLO, in the specs' order: from the recording rules where
    Prometheus evaluates the SLO's rule group with its objective (one query for all of them),
    else from raw series (one more round). `with_queries=False` leaves out each SLO's PromQL
    texts (building them for a thousand SLOs costs more than reading them); `recorded=False`
    reads raw series for every SLO."""
    if not specs:
        return []
    reads: dict[str, _Read] = {}
    if recorded:
        found: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
        for sample in prom.instant(recorded_query(specs), at, deadline):
            if not math.isnan(sample.value):
                found[_slo_key(sample.labels)][sample.labels.get("__name__", "")] = sample.value
        for spec in specs:
            values = found.get((spec.name, spec.namespace, spec.deployment), {})
            if _evaluated(spec, values.get(c.SLO_OBJECTIVE)):
                reads[spec.name] = _recorded_read(spec, values, with_queries)
    raw = [s for s in specs if s.name not in reads]
    groups: dict[tuple, list[SLOSpec]] = defaultdict(list)
    for s in raw:
        groups[shape(s)].append(s)
    group_list = list(groups.values())
    batch: dict[str, Query] = {}
    for i, group in enumerate(group_list):
        for w in sorted({w for s in group for w in burn_windows(s)}, key=promql.seconds):
            batch[f"{i}/{w}"] = Query(error_ratio_query(group, w), at)
    results = prom.batch(batch, deadline) if batch else {}
    by_target = {k: _by_target(v) for k, v in results.items()}  # type: ignore[arg-type]
    for i, group in enumerate(group_list):
        for s in group:
            target = (s.namespace, s.deployment)
            ratios = {w: by_target[f"{i}/{w}"].get(target) for w in burn_windows(s)}
            reads[s.name] = _Read(
                "raw-series",
                ratios,
                {w: burn_rate(r, s) for w, r in ratios.items()},
                {f"error_ratio/{w}": error_ratio_query([s], w) for w in burn_windows(s)}
                if with_queries
                else {},
            )
    return [_status(s, reads[s.name]) for s in specs]


def _slo_key(labels: dict[str, str]) -> tuple[str, str, str]:
    return labels.get(c.SLO, ""), labels.get("namespace", ""), labels.get("deployment", "")


def _evaluated(spec: SLOSpec, objective: float | None) -> bool:
    """Whether Prometheus evaluates the SLO's rule group with the spec's own objective."""
    return objective is not None and math.isclose(objective, spec.objective, rel_tol=1e-12)


def _recorded_read(spec: SLOSpec, values: dict[str, float], with_queries: bool) -> _Read:
    windows_ = burn_windows(spec)
    burns = {w: values.get(c.slo_burn_rate(w)) for w in windows_}
    ratios = {w: (None if b is None else b * budget(spec)) for w, b in burns.items()}
    ratios[spec.period] = values.get(c.slo_error_ratio(spec.period))
    this = promql.selector(promql.eq(c.SLO, spec.name))
    return _Read(
        "recording-rules",
        ratios,
        burns,
        {
            f"error_ratio/{spec.period}": c.slo_error_ratio(spec.period) + this,
            **{f"burn_rate/{w}": c.slo_burn_rate(w) + this for w in windows_},
        }
        if with_queries
        else {},
    )


def _status(spec: SLOSpec, read: _Read) -> SLOStatus:
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
