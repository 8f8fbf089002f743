"""The engines the simulators can be: defaults, writer, info documents and error conventions.

An engine simulator is a `Simulation` (the queueing model) plus a writer that renders it as
that engine's `/metrics` page. A writer is any object with the `Writer` shape below; adding an
engine means one module with a writer and one `EngineKind` entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inferwatch.simulators import tgi, vllm
from inferwatch.simulators.model import (
    REFUSED_OVERLOADED,
    REFUSED_QUEUE_FULL,
    REFUSED_VALIDATION,
    EngineConfig,
    LoadProfile,
    Simulation,
    Workload,
)
from inferwatch.simulators.openai import ApiError


class Writer(Protocol):
    content_type: str
    version: str

    def render(self) -> bytes:
        """The engine's /metrics page now."""

    def observe_http(
        self,
        handler: str,
        method: str,
        status: int,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One API request served over HTTP (engines without HTTP metrics ignore it)."""


@dataclass(frozen=True)
class EngineKind:
    name: str
    title: str
    config: EngineConfig
    default_model: str
    writer: Callable[[Simulation, str], Writer]
    # GET documents beside /metrics and /health: path -> JSON body.
    documents: Callable[[Simulation, Writer, str], dict[str, dict]]
    # The HTTP status and JSON body of a refused or failed request.
    error: Callable[[ApiError], dict]
    validation_status: int
    generation_error_status: int


def _vllm_documents(sim: Simulation, writer: Writer, model: str) -> dict[str, dict]:
    card = {
        "id": model,
        "object": "model",
        "created": 0,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": sim.config.max_model_len,
        "permission": [],
    }
    return {
        "/version": {"version": writer.version},
        "/v1/models": {"object": "list", "data": [card]},
    }


def _tgi_documents(sim: Simulation, writer: Writer, model: str) -> dict[str, dict]:
    assert isinstance(writer, tgi.TgiWriter)
    card = {"id": model, "object": "model", "created": 0, "owned_by": model}
    return {"/info": writer.info(), "/v1/models": {"object": "list", "data": [card]}}


def _vllm_error(err: ApiError) -> dict:
    kinds = {
        400: "BadRequestError",
        404: "NotFoundError",
        429: "TooManyRequestsError",
        500: "InternalServerError",
    }
    return {
        "error": {
            "message": err.message,
            "type": kinds.get(err.status, "Error"),
            "param": err.param,
            "code": err.status,
        }
    }


def _tgi_error(err: ApiError) -> dict:
    return {"error": err.message, "error_type": err.kind}


ENGINES: dict[str, EngineKind] = {
    "vllm": EngineKind(
        name="vllm",
        title="vLLM V1 0.32",
        config=EngineConfig(),
        default_model="meta-llama/Llama-3.1-8B-Instruct",
        writer=vllm.VllmWriter,
        documents=_vllm_documents,
        error=_vllm_error,
        validation_status=400,
        generation_error_status=500,
    ),
    "tgi": EngineKind(
        name="tgi",
        title="TGI 3.x",
        config=EngineConfig(
            max_num_seqs=256,
            max_num_batched_tokens=8192,
            chunked_prefill=False,
            reserve_full=True,
            waiting_served_ratio=0.3,
            max_waiting_steps=20,
            max_in_flight=128,
        ),
        default_model="mistralai/Mistral-7B-Instruct-v0.3",
        writer=tgi.TgiWriter,
        documents=_tgi_documents,
        error=_tgi_error,
        validation_status=422,
        generation_error_status=424,
    ),
}


def engine_kind(name: str) -> EngineKind:
    try:
        return ENGINES[name]
    except KeyError:
        known = ", ".join(ENGINES)
        raise ValueError(f"unknown engine {name!r}; simulators exist for {known}") from None


def refusal_error(
    kind: EngineKind, reason: str, sim: Simulation, prompt: int, max_tokens: int
) -> ApiError:
    """The error an engine answers for a request the model refused."""
    if reason == REFUSED_VALIDATION:
        limit = sim.config.max_model_len
        return ApiError(
            kind.validation_status,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt + max_tokens} tokens ({prompt} in the prompt, {max_tokens} in the "
            "completion). Please reduce the length of the prompt or completion.",
            "max_tokens",
            "validation",
        )
    if reason == REFUSED_OVERLOADED:
        return ApiError(429, "Model is overloaded", None, "overloaded")
    if reason == REFUSED_QUEUE_FULL:
        return ApiError(429, "The server's request queue is full; retry later", None, "overloaded")
    raise ValueError(f"unknown refusal reason {reason!r}")


@dataclass
class EngineSimulator:
    """One engine's simulation and its /metrics writer."""

    kind: EngineKind
    sim: Simulation
    writer: Writer
    model: str


def build(
    engine: str,
    *,
    model: str | None = None,
    load: LoadProfile | None = None,
    workload: Workload | None = None,
    config: EngineConfig | None = None,
    ranks: int = 1,
    seed: int = 0,
) -> EngineSimulator:
    kind = engine_kind(engine)
    sim = Simulation(config or kind.config, ranks=ranks, load=load, workload=workload, seed=seed)
    name = model or kind.default_model
    return EngineSimulator(kind, sim, kind.writer(sim, name), name)
