"""Ollama, which has no `/metrics`: its `GET /api/ps` and `GET /api/version`, from the model,
and the bodies of its native API (`POST /api/generate`, `POST /api/chat`).

The sidecar reads Ollama by polling these two documents and, in proxy mode, by measuring the
traffic it forwards. The simulator answers them as Ollama 0.6 does. Its metrics page is empty
(real Ollama answers 404 there; nothing reads it). Sample of `/api/ps`:

    {"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 3183298560,
                 "size_vram": 3183298560, "context_length": 4096, ...}]}

The native API streams newline-delimited JSON by default, one token a line, and ends with a
line carrying `done_reason`, the token counts and the durations in nanoseconds:

    {"model":"llama3.1:8b","created_at":"...","response":" the","done":false}
    {"model":"llama3.1:8b",...,"done":true,"done_reason":"stop","prompt_eval_count":26,...}
"""

from __future__ import annotations

from datetime import UTC, datetime

from inferwatch.simulators import openai
from inferwatch.simulators.model import Observer, Request, Simulation
from inferwatch.simulators.openai import ApiError

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


# `options.num_predict` values that mean "no limit" (until the context is full).
_UNLIMITED = (-1, -2)


def completion(body: object, chat: bool) -> openai.Completion:
    """A `/api/generate` or `/api/chat` body as the simulators' request; ApiError when wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "options must be an object")
    translated: dict = {"model": body.get("model"), "stream": body.get("stream", True)}
    num_predict = options.get("num_predict")
    if num_predict not in (None, *_UNLIMITED):
        translated["max_tokens"] = num_predict
    if chat:
        translated["messages"] = body.get("messages")
    else:
        translated["prompt"] = body.get("prompt")
    return openai.parse(translated, chat)


def created_at() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def token_line(model: str, chat: bool, text: str) -> dict:
    """One streamed token."""
    body: dict = {"model": model, "created_at": created_at()}
    if chat:
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    body["done"] = False
    return body


def done_line(model: str, chat: bool, req: Request, text: str = "") -> dict:
    """The last line of a stream, or the whole answer (`text`) when not streamed."""
    body = token_line(model, chat, text)
    assert req.finished_at is not None
    start = req.scheduled_at if req.scheduled_at is not None else req.arrival
    first = req.first_token_at if req.first_token_at is not None else req.finished_at

    def ns(seconds: float) -> int:
        return max(0, round(seconds * 1e9))

    body.update(
        done=True,
        done_reason=req.finish_reason,
        total_duration=ns(req.finished_at - req.arrival),
        load_duration=ns(start - req.arrival),
        prompt_eval_count=req.prompt_tokens,
        prompt_eval_duration=ns(first - start),
        eval_count=req.output_tokens,
        eval_duration=ns(req.finished_at - first),
    )
    return body


def loaded(model: str) -> dict:
    """What `/api/generate` answers to an empty prompt: the model is loaded, nothing generated."""
    return {
        "model": model,
        "created_at": created_at(),
        "response": "",
        "done": True,
        "done_reason": "load",
    }


def not_found(model: object) -> str:
    return f"model '{model}' not found, try pulling it first"
