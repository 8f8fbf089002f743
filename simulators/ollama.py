"""Ollama, which has no `/metrics`: its `GET /api/ps` and `GET /api/version`, from the model.

The sidecar reads Ollama by polling these two documents and, in proxy mode, by measuring the
traffic it forwards. The simulator answers them as Ollama 0.6 does. Its metrics page is empty
(real Ollama answers 404 there; nothing reads it). Sample of `/api/ps`:

    {"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 3183298560,
                 "size_vram": 3183298560, "context_length": 4096, ...}]}
"""

from __future__ import annotations

from inferwatch.simulators.model import Observer, Simulation

VERSION = "0.6.5"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BYTES_PER_PARAM = 0.5625  # a 4-bit quantized model (Q4_K_M) plus its scales


class OllamaWriter(Observer):
    """Ollama's JSON documents for a simulation; no metrics page."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model: str):
        self.sim = sim
        self.model = model

    def observe_http(self, *_args: object) -> None:
        """Ollama keeps no metrics."""

    def render(self) -> bytes:
        return b""

    def ps(self) -> dict:
        cfg = self.sim.config
        size = int(cfg.params * BYTES_PER_PARAM + cfg.kv_bytes_per_token * cfg.kv_cache_tokens)
        return {
            "models": [
                {
                    "name": self.model,
                    "model": self.model,
                    "size": size,
                    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "parameter_size": f"{cfg.params / 1e9:.1f}B",
                        "quantization_level": "Q4_K_M",
                    },
                    "expires_at": "2318-11-25T16:00:00Z",
                    "size_vram": size,
                    "context_length": cfg.max_model_len,
                }
            ]
        }
