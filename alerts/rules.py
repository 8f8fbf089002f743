"""Rules as data, and the one renderer that turns them into Prometheus rule groups.

Every alert has the same shape: a name, PromQL, `for`, a `severity` label, a static `summary`
and a templated `description`; the renderer adds `runbook_url` from one pattern. Recording
rules have a `level:metric:operations` name (see `conventions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferwatch.alerts import conventions, promql

_PROMETHEUS_TEMPLATE_MARKERS = ("{{", "}}")


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        level, _, rest = self.record.partition(":")
        if level not in conventions.LEVELS or rest.count(":") != 1:
            raise ValueError(f"recording rule {self.record!r} is not named level:metric:operations")
        promql.validate_metric_name(self.record)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str  # static: no template, so notifications group and read the same
    description: str  # templated: names namespace, pod or deployment, and model
    for_: str = "0m"
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        promql.validate_metric_name(self.name)
        promql.validate_duration(self.for_)
        if self.severity not in conventions.SEVERITIES:
            raise ValueError(
                f"{self.name}: severity {self.severity!r} is not one of "
                f"{', '.join(conventions.SEVERITIES)}"
            )
        if any(m in self.summary for m in _PROMETHEUS_TEMPLATE_MARKERS):
            raise ValueError(f"{self.name}: the summary is static; templates go in the description")
        if "{{" not in self.description:
            raise ValueError(f"{self.name}: the description must name where (a template)")
        reserved = {conventions.SEVERITY, "alertname"} & set(self.labels)
        if reserved:
            raise ValueError(f"{self.name}: labels {sorted(reserved)} are set by the renderer")


Rule = Recording | Alert


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None

    def alerts(self) -> tuple[Alert, ...]:
        return tuple(r for r in self.rules if isinstance(r, Alert))

    def recordings(self) -> tuple[Recording, ...]:
        return tuple(r for r in self.rules if isinstance(r, Recording))


def render_rule(rule: Rule, runbook: Callable[[str], str]) -> dict[str, Any]:
    if isinstance(rule, Recording):
        out: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            out["labels"] = dict(rule.labels)
        return out
    out = {"alert": rule.name, "expr": rule.expr}
    if rule.for_ not in ("0m", "0s"):
        out["for"] = rule.for_
    out["labels"] = {conventions.SEVERITY: rule.severity, **rule.labels}
    out["annotations"] = {
        "summary": rule.summary,
        "description": rule.description,
        conventions.RUNBOOK_URL: runbook(rule.name),
    }
    return out


def render_group(group: Group, runbook: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": group.name}
    if group.interval:
        out["interval"] = group.interval
    out["rules"] = [render_rule(r, runbook) for r in group.rules]
    return out


def rule_file(groups: Iterable[Group], runbook: Callable[[str], str]) -> dict[str, Any]:
    """A plain Prometheus rule file."""
    return {"groups": [render_group(g, runbook) for g in groups]}


def prometheus_rule(
    name: str, groups: Iterable[Group], runbook: Callable[[str], str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """A `monitoring.coreos.com/v1` PrometheusRule whose `spec` is the plain rule file."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": rule_file(groups, runbook),
    }
