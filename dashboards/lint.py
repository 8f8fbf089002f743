"""Structural checks of a dashboard that need no Grafana and no Prometheus.

`build` refuses to write a dashboard with problems; the tests add the JSON Schema check
(`dashboards/schema/`) and run every query against a real Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from inferwatch import schema
from inferwatch.dashboards import coverage, variables
from inferwatch.dashboards.style import DATASOURCE_VARIABLE, GRID_WIDTH

MAX_UID_LENGTH = 40  # Grafana's limit


class DashboardError(ValueError):
    """A dashboard has structural problems; the message lists every one."""


def _grid_problems(dashboard: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        pos = panel.get("gridPos")
        if pos is None:
            problems.append(f"panel {title!r} has no gridPos")
            continue
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > GRID_WIDTH:
            problems.append(f"panel {title!r} gridPos {pos} is outside the {GRID_WIDTH}-wide grid")
        cells = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        clash = sorted(cells & taken.keys())
        if clash:
            other = taken[clash[0]]
            problems.append(f"panels {other!r} and {title!r} overlap at {clash[0]}")
        taken.update(dict.fromkeys(cells, title))
    return problems


def _id_problems(dashboard: Mapping[str, Any]) -> list[str]:
    seen: dict[int, str] = {}
    problems = []
    for panel in dashboard.get("panels", []):
        pid, title = panel.get("id"), panel.get("title", "?")
        if pid in seen:
            problems.append(f"panels {seen[pid]!r} and {title!r} share id {pid}")
        seen[pid] = title
    return problems


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_SOURCE_MATCHER = re.compile(rf"\b{schema.SOURCE_LABEL}\s*(=|!=|=~|!~)")


def source_problems(expr: str) -> list[str]:
    """Selectors of a family the proxy mode also measures that do not say which source they
    read: without one, a request counted by an engine and by a proxy in front of it adds up
    twice (`promql.one_source` writes them)."""
    measured = {sample for f in schema.PROXY_FAMILIES for sample in f.sample_names}
    text = coverage.strip_strings(expr)
    return [
        f"{m.group(1)} is read without a `{schema.SOURCE_LABEL}` matcher"
        for m in _SELECTOR.finditer(text)
        if m.group(1) in measured and not _SOURCE_MATCHER.search(m.group(2) or "")
    ]


def _variable_problems(dashboard: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    declared = [v["name"] for v in dashboard.get("templating", {}).get("list", [])]
    query_vars = {v.name: v for v in variables.query_variables(dashboard)}

    def check(text: str, where: str, defined: set[str]) -> None:
        for name in sorted(variables.references(text)):
            if name.startswith("__"):
                continue  # Grafana's own ($__rate_interval, $__range, ...)
            if name not in defined:
                problems.append(f"{where} uses ${name}, which is not defined before it")
        for m in variables.MATCHER.finditer(text):
            name = m.group(3).strip("${}")
            variable = query_vars.get(name)
            if variable is None:
                continue
            regex_op = m.group(2) in ("=~", "!~")
            if variable.many and not regex_op:
                problems.append(f"{where}: ${name} holds several values; use it with =~")
            if not variable.many and regex_op:
                problems.append(f"{where}: ${name} holds one value; use it with =, not as a regex")

    defined: set[str] = set()
    for v in dashboard.get("templating", {}).get("list", []):
        query = v.get("query", "")
        check(query if isinstance(query, str) else str(query), f"variable ${v['name']}", defined)
        defined.add(v["name"])
    if DATASOURCE_VARIABLE not in declared:
        problems.append(f"no ${DATASOURCE_VARIABLE} variable: panels would need a fixed id")
    all_vars = set(declared)
    for panel in variables.panels(dashboard):
        title = panel.get("title", "?")
        uid = panel.get("datasource", {}).get("uid", "")
        if uid != f"${{{DATASOURCE_VARIABLE}}}":
            problems.append(f"panel {title!r} has datasource uid {uid!r}, not the variable")
        check(title, f"title of {title!r}", all_vars)
        for target in panel.get("targets", []):
            where = f"panel {title!r} query {target.get('refId')}"
            if target.get("datasource", {}).get("uid") != f"${{{DATASOURCE_VARIABLE}}}":
                problems.append(f"{where} does not use the ${DATASOURCE_VARIABLE} variable")
            check(target.get("expr", ""), where, all_vars)
            check(target.get("legendFormat", ""), where, all_vars)
            try:
                coverage.families_in(target.get("expr", ""))
            except coverage.UnknownMetricError as exc:
                problems.append(f"{where}: {exc}")
            problems += [f"{where}: {p}" for p in source_problems(target.get("expr", ""))]
    return problems


def problems(dashboard: Mapping[str, Any]) -> list[str]:
    """Every structural problem found, or an empty list."""
    found: list[str] = []
    uid = dashboard.get("uid") or ""
    if not uid or len(uid) > MAX_UID_LENGTH:
        found.append(f"uid {uid!r} must have 1 to {MAX_UID_LENGTH} characters")
    if not dashboard.get("title"):
        found.append("the dashboard has no title")
    for panel in variables.panels(dashboard):
        if not panel.get("description"):
            found.append(f"panel {panel.get('title')!r} has no description")
        if not panel.get("targets"):
            found.append(f"panel {panel.get('title')!r} has no query")
    return (
        found + _id_problems(dashboard) + _grid_problems(dashboard) + _variable_problems(dashboard)
    )


def check(dashboard: Mapping[str, Any]) -> None:
    """Raise `DashboardError` listing every problem, if there is any."""
    found = problems(dashboard)
    if found:
        title = dashboard.get("title", dashboard.get("uid", "dashboard"))
        raise DashboardError(f"{title}:\n  " + "\n  ".join(found))
