"""Every adapter, and auto-detection of which one a page needs."""

from __future__ import annotations

import re

from inferwatch import schema
from inferwatch.exporters import dcgm, llamacpp, ollama, sglang, tgi, triton, trtllm, vllm
from inferwatch.exporters.adapter import Adapter

# Detection order matters where one engine's names contain another's prefix.
# TensorRT-LLM on Triton before plain Triton: its page has Triton's `nv_inference_*` names too.
ENGINE_ADAPTERS: tuple[Adapter, ...] = (
    vllm.ADAPTER,
    tgi.ADAPTER,
    sglang.ADAPTER,
    trtllm.ADAPTER,
    triton.ADAPTER,
    llamacpp.ADAPTER,
    ollama.ADAPTER,
)
GPU_ADAPTERS: tuple[Adapter, ...] = (dcgm.ADAPTER, triton.GPU_ADAPTER)
# GPU figures an engine's own page carries, read when no dcgm-exporter is given.
PAGE_GPU_ADAPTERS: dict[str, Adapter] = {
    trtllm.ADAPTER.name: triton.GPU_ADAPTER,
    triton.ADAPTER.name: triton.GPU_ADAPTER,
}
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (*ENGINE_ADAPTERS, *GPU_ADAPTERS)}


def proxy_only(family: str) -> tuple[str, ...]:
    """Engines whose only figures of `family` are measured by the sidecar's proxy mode (Ollama,
    which has no /metrics): for them, the `source="proxy"` series are the engine's figures."""
    return tuple(
        adapter.name
        for adapter in ENGINE_ADAPTERS
        if (concept := adapter.concept(family)) is not None
        and concept.sources
        and all(
            s.set_labels.get(schema.SOURCE_LABEL) == schema.PROXY_SOURCE for s in concept.sources
        )
    )


class DetectionError(ValueError):
    """The page is not one of the engines we know."""


_SAMPLE_START = re.compile(r"^(?:# (?:TYPE|HELP) )?([a-zA-Z_:][a-zA-Z0-9_:]*)", re.MULTILINE)


def detect(text: str, candidates: tuple[Adapter, ...] = ENGINE_ADAPTERS) -> Adapter:
    """The adapter whose metric-name prefixes appear on the page (first match wins)."""
    names = {m.group(1) for m in _SAMPLE_START.finditer(text)}
    for adapter in candidates:
        if any(n.startswith(adapter.detect) for n in names):
            return adapter
    if any(n.startswith(a.detect) for a in GPU_ADAPTERS for n in names):
        raise DetectionError("this is a dcgm-exporter page, not an engine's: pass it as --dcgm")
    sample = ", ".join(sorted(names)[:5]) or "no metric names at all"
    known = ", ".join(a.name for a in candidates)
    raise DetectionError(f"no engine recognised (knows {known}); the page has: {sample}")


def get(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise DetectionError(f"unknown engine {name!r}; known: {known}") from None
