"""Template variables outside Grafana: which a dashboard uses, their values, and substitution.

The every-query test and the PNG previews run a dashboard's PromQL against Prometheus
directly, so they do here what Grafana does: list each variable's values with its
`label_values(selector, label)` query (earlier variables substituted first), pick some, and
put them into the queries with Grafana's escaping rules:

- a single-value variable goes into `label="$var"` as the value itself;
- a multi-value or "All" variable goes into `label=~"$var"` as `(a|b)`, each value
  regex-escaped, or as the variable's `allValue` (`.*`) for "All".

Both are then escaped for a PromQL string literal, so a label value with quotes or
backslashes selects exactly itself and never changes the query around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# `$name`, `${name}`, `${name:format}` and the legacy `[[name]]` (`$1` in `label_replace`
# is a regex group, not a variable).
REFERENCE = re.compile(r"\$([A-Za-z_]\w*)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
# A variable used as a label matcher's value: `label=~"$var"`.
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"(\$\w+|\$\{\w+\})"')
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.DOTALL)
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")

ALL = ("$__all",)  # the "All" choice of a variable that has one


class VariableError(ValueError):
    """A variable is missing, has no values, or is used in a way we cannot substitute."""


@dataclass(frozen=True)
class Variable:
    """What substitution needs of a dashboard variable."""

    name: str
    query: str
    multi: bool
    include_all: bool
    all_value: str | None

    @property
    def many(self) -> bool:
        """Takes a regex (`=~`): several values or "All"."""
        return self.multi or self.include_all

    def selector_and_label(self) -> tuple[str, str]:
        match = LABEL_VALUES.match(self.query)
        if match is None:
            raise VariableError(
                f"${self.name}: {self.query!r} is not label_values(selector, label)"
            )
        return match.group(1).strip(), match.group(2)


def query_variables(dashboard: Mapping[str, Any]) -> list[Variable]:
    """The dashboard's query variables, in order (the data source variable is left out)."""
    return [
        Variable(
            name=v["name"],
            query=v["query"] if isinstance(v["query"], str) else v["query"].get("query", ""),
            multi=bool(v.get("multi")),
            include_all=bool(v.get("includeAll")),
            all_value=v.get("allValue"),
        )
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "query"
    ]


def references(text: str) -> set[str]:
    """Names of the variables a text refers to (Grafana's own `__*` names included)."""
    return {next(g for g in m.groups() if g) for m in REFERENCE.finditer(text)}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, collapsed rows' panels included."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _promql_string(value: str) -> str:
    """Escape for the inside of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def regex_value(values: Sequence[str]) -> str:
    """Grafana's form for several values in a regex matcher: `(a|b)`, each regex-escaped."""
    escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _matcher_value(variable: Variable, chosen: Sequence[str]) -> str:
    if tuple(chosen) == ALL:
        return variable.all_value or ".*"
    if variable.many:
        return regex_value(chosen)
    if len(chosen) != 1:
        raise VariableError(f"${variable.name} takes one value, not {list(chosen)}")
    return chosen[0]


def substitute(
    text: str,
    variables: Sequence[Variable],
    chosen: Mapping[str, Sequence[str]],
    builtins: Mapping[str, str] | None = None,
) -> str:
    """`text` with every variable replaced by its chosen values (see the module docstring).

    `builtins` gives Grafana's own variables (`__rate_interval`, `__range`, ...). A variable
    that has no value, or is used outside a label matcher, raises `VariableError`.
    """
    by_name = {v.name: v for v in variables}
    builtins = dict(builtins or {})
    in_matchers = {m.group(3).strip("${}") for m in MATCHER.finditer(text)}
    stray = references(text) - (in_matchers & set(by_name)) - set(builtins)
    if stray:
        names = ", ".join(sorted(f"${n}" for n in stray))
        raise VariableError(f"{names} in {text!r}: not a label matcher's value or unknown")

    def matcher(m: re.Match[str]) -> str:
        label, op, ref = m.groups()
        name = ref.strip("${}")
        if name not in by_name:
            return m.group(0)
        variable = by_name[name]
        if name not in chosen:
            raise VariableError(f"${name} has no value")
        if variable.many and op not in ("=~", "!~"):
            raise VariableError(f"${name} can hold several values: use it with =~, not {op}")
        value = _matcher_value(variable, chosen[name])
        return f'{label}{op}"{_promql_string(value)}"'

    # Grafana's own variables first: a chosen label value is never read for `$` again.
    out = text
    for name, value in builtins.items():
        out = re.sub(rf"\$\{{{name}\}}|\${name}\b", lambda _m, v=value: v, out)
    return MATCHER.sub(matcher, out)


# (selector, label) -> the values of `label` on series matching `selector`.
LabelValues = Callable[[str, str], list[str]]
# (variable, its values) -> the values chosen, or `ALL`.
Chooser = Callable[[Variable, list[str]], Sequence[str]]


def choose_all_or_first(variable: Variable, options: list[str]) -> Sequence[str]:
    """What Grafana shows on first load: "All" where offered, else the first value."""
    return ALL if variable.include_all else options[:1]


def resolve(
    dashboard: Mapping[str, Any],
    label_values: LabelValues,
    choose: Chooser = choose_all_or_first,
) -> dict[str, Sequence[str]]:
    """Choose a value for every query variable, in order, as Grafana would on load."""
    variables = query_variables(dashboard)
    chosen: dict[str, Sequence[str]] = {}
    for variable in variables:
        selector, label = variable.selector_and_label()
        selector = substitute(selector, variables, chosen)
        options = sorted(set(label_values(selector, label)))
        if not options:
            raise VariableError(f"${variable.name}: no values of {label!r} for {selector}")
        picked = choose(variable, options)
        if tuple(picked) != ALL and not set(picked) <= set(options):
            raise VariableError(f"${variable.name}: {list(picked)} not among {options}")
        if not picked:
            raise VariableError(f"${variable.name}: nothing chosen among {options}")
        chosen[variable.name] = picked
    return chosen
