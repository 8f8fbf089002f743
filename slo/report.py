"""`inferwatch advise`'s readable report of one or more `Advice`."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable

from inferwatch.slo.models import Advice, Recommendation

WIDTH = 100


def _value(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def recommendation(r: Recommendation, index: int) -> list[str]:
    current = _value(r.current)
    if r.current is not None and r.current_source not in ("engine-info",):
        current += f" ({r.current_source})"
    lines = [
        f"  {index}. [{r.kind}] {r.parameter}: {current} -> {_value(r.proposed)}"
        f"  ({r.direction}, confidence {r.confidence})",
        _wrap("Why: " + r.rationale, "     "),
        _wrap("Expected: " + r.expected_effect, "     "),
        "     Evidence:",
    ]
    for e in r.evidence:
        unit = f" {e.unit}" if e.unit and e.value is not None else ""
        lines.append(f"       - {e.name} = {_value(e.value)}{unit}")
        if e.promql:
            lines.extend("           " + line for line in e.promql.splitlines())
    patch = r.patch
    if patch is not None:
        for label, command in patch.kubectl.items():
            lines.append(f"     Apply ({label}):")
            lines.append("       " + command)
        if patch.json_patch and not patch.kubectl:
            lines.append("     JSON patch: " + json.dumps(patch.json_patch))
        for note in patch.notes:
            lines.append(_wrap("Note: " + note, "     "))
    return lines


def advice(a: Advice) -> str:
    t = a.target
    where = (
        f"{t.namespace}/{t.deployment}" if t.namespace and t.deployment else (t.model or "engine")
    )
    lines = [
        f"{where} ({t.engine or 'engine unknown'}{', ' + t.model if t.model else ''}): {a.status}",
        _wrap(a.summary, "  "),
    ]
    for c in a.objectives:
        met = {True: "met", False: "MISSED", None: "not judged"}[c.met]
        lines.append(f"  objective {c.name}: {c.sli}, observed {_value(c.observed)}: {met}")
    flags = ", ".join(
        f"{name}={_value(state.value)}"
        for name, state in a.flags.items()
        if state.value is not None
    )
    lines.append(f"  flags ({a.flags_source}): {flags or 'none known'}")
    for i, r in enumerate(a.recommendations, 1):
        lines.extend(recommendation(r, i))
    for m in a.missing:
        lines.append(_wrap("Missing: " + m, "  "))
    for n in a.notes:
        lines.append(_wrap("Note: " + n, "  "))
    return "\n".join(lines) + "\n"


def report(items: Iterable[Advice]) -> str:
    return "\n".join(advice(a) for a in items)


def as_json(items: Iterable[Advice]) -> str:
    """`{"recommendations": [...], "deployments": [...]}`: every recommendation, flat, and the
    full advice per deployment."""
    items = list(items)
    doc = {
        "recommendations": [r.model_dump(mode="json") for a in items for r in a.recommendations],
        "deployments": [a.model_dump(mode="json") for a in items],
    }
    return json.dumps(doc, indent=2) + "\n"
