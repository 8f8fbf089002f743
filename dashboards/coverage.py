"""Which engine reports which family, read from the adapters, and the metric names in a query.

Panels use this to say "not reported by TGI" instead of sitting empty: the note is derived from
the families a query reads and from each adapter's concepts, so an engine added under
`exporters/` is covered without touching the dashboards.
"""

from __future__ import annotations

import re
from functools import cache

from inferwatch import schema
from inferwatch.exporters import registry

_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Prefixes of the metric names inferwatch owns: any such token in a query must be in the schema.
_OWN_PREFIXES = ("llm_", "inferwatch_")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class UnknownMetricError(ValueError):
    """A query names a metric that is not in the normalized schema."""


@cache
def _sample_to_family() -> dict[str, str]:
    names: dict[str, str] = {}
    for fam in (*schema.FAMILIES, *schema.EXPORTER_FAMILIES):
        for sample in fam.sample_names:
            names[sample] = fam.name
    return names


def families_in(expr: str) -> frozenset[str]:
    """The schema families an expression reads (histogram samples map to their family).

    A token that looks like one of our metrics but is not in the schema raises, so a typo never
    ships as an empty panel. Recording-rule names (`level:metric:operations`, with colons) are
    not families and are left out.
    """
    known = _sample_to_family()
    found: set[str] = set()
    for token in _IDENTIFIER.findall(strip_strings(expr)):
        family = known.get(token)
        if family is not None:
            found.add(family)
        elif ":" not in token and token.startswith(_OWN_PREFIXES):
            raise UnknownMetricError(f"{token!r} in {expr!r} is not a normalized family")
    return frozenset(found)


def strip_strings(expr: str) -> str:
    """The expression without its string literals (label values may contain anything)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def unreported(families: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Engine title -> the given engine families it does not report, for every engine lacking any.

    An adapter's variant (a server or build of the engine that lacks some of its sources, e.g.
    TensorRT-LLM on Triton) is listed under its own title with what only it lacks. GPU families
    are reported by the GPU source (dcgm-exporter) whatever the engine, so they never make an
    engine "not reporting".
    """
    engine_families = [
        name for name in sorted(families) if schema.family(name).group is schema.Group.ENGINE
    ]
    missing: dict[str, tuple[str, ...]] = {}
    for adapter in registry.ENGINE_ADAPTERS:
        lacking = tuple(name for name in engine_families if adapter.concept(name) is None)
        if lacking:
            missing[adapter.title] = lacking
        for variant in adapter.variants:
            gaps = tuple(
                name
                for name in engine_families
                if (concept := adapter.concept(name)) is not None and not variant.reports(concept)
            )
            if gaps:
                missing[variant.title] = gaps
    return missing


def engine_name(title: str) -> str:
    """The `engine` label value of an adapter, from the title a note shows (its own, or one of
    its variants')."""
    for adapter in registry.ENGINE_ADAPTERS:
        if title == adapter.title or title in (v.title for v in adapter.variants):
            return adapter.name
    raise KeyError(f"no engine adapter titled {title!r}")


NOTE_PREFIX = "Not reported by "


def note(families: frozenset[str]) -> str:
    """The description lines that say which engines cannot fill a panel, or "".

    One line per set of missing families: `Not reported by TGI, Ollama: `llm_...`.`
    (`reported_in` reads them back).
    """
    by_missing: dict[tuple[str, ...], list[str]] = {}
    for title, names in unreported(families).items():
        by_missing.setdefault(names, []).append(title)
    return "\n".join(
        f"{NOTE_PREFIX}{', '.join(titles)}: {', '.join(f'`{n}`' for n in names)}."
        for names, titles in by_missing.items()
    )


def reported_in(description: str) -> dict[str, tuple[str, ...]]:
    """Engine title -> missing families, as a panel description states them (see `note`)."""
    stated: dict[str, tuple[str, ...]] = {}
    for line in description.splitlines():
        if not line.startswith(NOTE_PREFIX):
            continue
        titles, _, names = line.removeprefix(NOTE_PREFIX).partition(": ")
        families = tuple(n.strip("`.") for n in names.split(", "))
        for title in titles.split(", "):
            stated[title] = families
    return stated


def _spoken_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def no_value(families: frozenset[str]) -> str | None:
    """What a panel shows instead of "No data" when some engine does not report its families."""
    titles = list(unreported(families))
    if not titles:
        return None
    verb = "does" if len(titles) == 1 else "do"
    return f"No data ({_spoken_list(titles)} {verb} not report this)"
