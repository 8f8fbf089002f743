"""Reading and writing Kubernetes YAML the way people write it.

Key order is kept as read (never sorted), lists are indented under their key, multi-line
strings are written as literal blocks, and long lines are not folded. Everything inferwatch
writes (rendered manifests, `inferwatch inject` output) goes through `dump_all`.
"""

from __future__ import annotations

from typing import Any

import yaml


class YAMLInputError(ValueError):
    """Input that is not YAML; the message says where."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent block sequences inside mappings (`containers:\n  - name: x`).
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def load_all(text: str, source: str = "input") -> list[Any]:
    """Every document of a multi-document YAML text (empty documents included, as None)."""
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YAMLInputError(f"{source}: not valid YAML{at}: {problem}") from None


def dump(doc: Any) -> str:
    return yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
    )


def dump_all(docs: list[Any]) -> str:
    """Documents separated by `---`, empty ones dropped."""
    return "---\n".join(dump(d) for d in docs if d is not None)
