"""Ollama, which has no /metrics: its loaded models by polling, its traffic through the proxy.

Sample output:

    llm_engine_info{engine="ollama",model="llama3.2:3b",version="0.6.5",max_model_len="4096",
                    model_bytes="3183298560",model_vram_bytes="3183298560"} 1
    llm_time_to_first_token_seconds_bucket{engine="ollama",model="llama3.2:3b",source="proxy",
                                           le="0.25"} 12

Every scrape polls `GET /api/ps` (the models loaded, their size and the part of it in VRAM: a
model only partly in VRAM runs largely on the CPU) and `GET /api/version`. Everything about
requests comes from the proxy mode (`inferwatch exporter --proxy`, see `proxy.py`), which
measures them on their way through.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inferwatch.exporters.adapter import Adapter, Concept, Source
from inferwatch.exporters.fetch import fetch_json
from inferwatch.exporters.measure import PROXY_CONCEPTS
from inferwatch.exporters.normalize import Context, Normalizer, escape_label
from inferwatch.schema import Group, Kind

if TYPE_CHECKING:
    from inferwatch.exporters.sources import Collected

_LOADED = "ollama:loaded_model"
# /api/ps fields stated as `llm_engine_info` labels.
_PS_FIELDS = {
    "context_length": "max_model_len",
    "size": "model_bytes",
    "size_vram": "model_vram_bytes",
}

ADAPTER = Adapter(
    name="ollama",
    title="Ollama",
    group=Group.ENGINE,
    detect=(_LOADED,),
    model_label="model",
    versions="Ollama 0.1-0.6+ (`/api/ps`, `/api/version`; the API the proxy reads is stable)",
    rank_note="One server: no ranks.",
    concepts=(
        *PROXY_CONCEPTS,
        Concept(
            "llm_engine_info",
            (
                Source(
                    _LOADED,
                    Kind.GAUGE,
                    labels={"version": "version", **_PS_FIELDS},
                    note="one series per model loaded, from `GET /api/ps` and `GET /api/version`",
                ),
            ),
            note="`model_vram_bytes` below `model_bytes` means part of the model runs on the CPU.",
        ),
    ),
    notes=(
        "Ollama has no Prometheus endpoint: request figures exist only in proxy mode "
        '(`--proxy`), measured from the traffic and labelled `source="proxy"`.',
        "Absent: requests waiting (Ollama queues requests it does not report), KV-cache usage, "
        "queue time, preemptions, prefix caching.",
    ),
)


def loaded_models_page(ps: dict, version: str | None) -> str:
    """The models of `GET /api/ps` as lines the adapter reads."""
    lines = []
    for entry in ps.get("models") or ():
        if not isinstance(entry, dict):
            continue
        name = entry.get("model") or entry.get("name")
        if not isinstance(name, str) or not name:
            continue
        labels = {"model": name}
        if version:
            labels["version"] = version
        for field in _PS_FIELDS:
            value = entry.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                labels[field] = str(value)
        body = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(f"{_LOADED}{{{body}}} 1")
    return "\n".join(lines) + "\n" if lines else ""


class OllamaSource:
    """Polls Ollama's JSON endpoints where other engines have a /metrics page."""

    def __init__(self, name: str, base_url: str, ctx: Context):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/api/ps"
        self.adapter = ADAPTER
        self.ctx = ctx
        self._normalizer = Normalizer(ADAPTER, ctx)

    def set_context(self, ctx: Context) -> None:
        self.ctx = ctx
        self._normalizer = self._normalizer.with_context(ctx)

    def collect(self, timeout: float) -> Collected:
        from inferwatch.exporters.sources import Collected  # sources imports the registry

        start = time.perf_counter()
        ps = fetch_json(self.url, timeout)
        left = max(timeout - (time.perf_counter() - start), 0.05)
        version = fetch_json(self.base_url + "/api/version", left)
        out = Collected(self.name)
        if ps is None:
            out.error = f"no JSON answer from {self.url}"
        else:
            found = version.get("version") if version else None
            text = loaded_models_page(ps, str(found) if found else None)
            out.results.append(self._normalizer.normalize(text))
            out.up = True
        out.duration = time.perf_counter() - start
        return out
