"""`inferwatch load`: an OpenAI-compatible load generator that measures what clients see.

    from inferwatch.load import LoadSpec, run_load

    report = run_load(LoadSpec("http://127.0.0.1:8000", concurrency=4, requests=100, stream=True))
    report.completion_tokens, report.ttft.p99, report.to_dict()

The names below are imported on first use, so `inferwatch --help` does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoadSpec": "inferwatch.load.spec",
    "LoadSpecError": "inferwatch.load.spec",
    "LoadReport": "inferwatch.load.report",
    "RequestResult": "inferwatch.load.report",
    "LoadError": "inferwatch.load.runner",
    "run_load": "inferwatch.load.runner",
    "run_load_async": "inferwatch.load.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
