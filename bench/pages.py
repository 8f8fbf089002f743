"""Synthetic vLLM pages of many models, built from the real vLLM 0.32 capture."""

from __future__ import annotations

from pathlib import Path

from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Normalizer

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "fixtures" / "upstream" / "vllm-0.32.0-cpu-tiny-real.prom"


def vllm_page(models: int) -> str:
    """One family block per vLLM family the adapter reads, one series set per model.

    The capture's other families (process, http, `_created`) appear once, as on a real page.
    """
    routes = Normalizer(registry.get("vllm")).routes
    families: dict[str, list[str]] = {}
    headers: dict[str, list[str]] = {}
    tail: list[str] = []
    current = None
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ", 3)[2]
            headers.setdefault(current, []).append(line)
            continue
        if line.startswith("# TYPE "):
            headers.setdefault(current or "", []).append(line)
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in routes:
            families.setdefault(current or name, []).append(line)
        else:
            tail.append(line)
    out: list[str] = []
    for family, lines in families.items():
        out += headers.get(family, [])
        for i in range(models):
            model = f'model_name="org/model-{i:03d}-instruct"'
            out += [line.replace('model_name="tiny"', model) for line in lines]
    out += tail
    return "\n".join(out) + "\n"
