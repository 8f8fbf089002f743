"""The engines the simulators can be: defaults, writer, info documents and error conventions.

An engine simulator is a `Simulation` (the queueing model) plus a writer that renders it as
that engine's `/metrics` page. A writer is any object with the `Writer` shape below; adding an
engine means one module with a writer and one `EngineKind` entry here.

One simulated server is one kind: vLLM V1, TGI 3.x, SGLang 0.5.x, TensorRT-LLM on Triton,
Triton serving several models (one engine per model), llama.cpp's llama-server, and Ollama
(which has no /metrics: its sidecar runs in proxy mode and measures the requests it forwards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from inferwatch.simulators import llamacpp, ollama, sglang, tgi, triton, vllm
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


# A writer for a simulation serving these models (most engines serve exactly one).
WriterFactory = Callable[[Simulation, tuple[str, ...]], Writer]


def _one_model(cls: Callable[[Simulation, str], Writer]) -> WriterFactory:
    return lambda sim, models: cls(sim, models[0])


@dataclass(frozen=True)
class EngineKind:
    name: str
    title: str
    config: EngineConfig
    default_models: tuple[str, ...]
    writer: WriterFactory
    # GET documents beside /metrics and /health: path -> JSON body.
    documents: Callable[[EngineSimulator], dict[str, dict]]
    # The HTTP status and JSON body of a refused or failed request.
    error: Callable[[ApiError], dict]
    validation_status: int
    generation_error_status: int
    # Several engine ranks behind one server (vLLM, SGLang, TensorRT-LLM); otherwise one.
    data_parallel: bool = True
    # One engine per served model (Triton), instead of one model over every rank.
    engine_per_model: bool = False
    # No /metrics of its own (Ollama): its sidecar runs in proxy mode.
    needs_proxy: bool = False
    # Ollama's native `/api/generate` and `/api/chat` beside the OpenAI-compatible API.
    ollama_api: bool = False

    @property
    def default_model(self) -> str:
        return self.default_models[0]


def _card(model: str, owner: str, **extra: object) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": owner, **extra}


def _models_list(*cards: dict) -> dict:
    return {"object": "list", "data": list(cards)}


def _vllm_documents(es: EngineSimulator) -> dict[str, dict]:
    card = _card(
        es.model,
        "vllm",
        root=es.model,
        parent=None,
        max_model_len=es.sim.config.max_model_len,
        permission=[],
    )
    return {"/version": {"version": es.writer.version}, "/v1/models": _models_list(card)}


def _tgi_documents(es: EngineSimulator) -> dict[str, dict]:
    assert isinstance(es.writer, tgi.TgiWriter)
    return {"/info": es.writer.info(), "/v1/models": _models_list(_card(es.model, es.model))}


def _sglang_documents(es: EngineSimulator) -> dict[str, dict]:
    cfg = es.sim.config
    card = _card(es.model, "sglang", root=es.model, max_model_len=cfg.max_model_len)
    return {
        "/get_model_info": {
            "model_path": es.model,
            "tokenizer_path": es.model,
            "is_generation": True,
        },
        "/get_server_info": {
            "model_path": es.model,
            "context_length": cfg.max_model_len,
            "max_running_requests": cfg.max_num_seqs,
            "chunked_prefill_size": cfg.max_num_batched_tokens,
            "page_size": cfg.block_size,
            "max_total_num_tokens": cfg.kv_cache_tokens,
            "dp_size": len(es.sim.engines),
            "version": es.writer.version,
        },
        "/v1/models": _models_list(card),
    }


def _triton_documents(es: EngineSimulator, backend: str) -> dict[str, dict]:
    docs: dict[str, dict] = {
        "/v2": {
            "name": "triton",
            "version": es.writer.version,
            "extensions": ["classification", "model_repository", "statistics", "generate"],
        },
        # Triton's OpenAI-compatible frontend.
        "/v1/models": _models_list(*(_card(m, "Triton Inference Server") for m in es.models)),
    }
    for m in es.models:
        docs[f"/v2/models/{m}"] = {
            "name": m,
            "versions": [triton.MODEL_VERSION],
            "platform": backend,
            "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}],
        }
    return docs


def _llamacpp_documents(es: EngineSimulator) -> dict[str, dict]:
    assert isinstance(es.writer, llamacpp.LlamacppWriter)
    card = _card(es.model, "llamacpp", meta={"n_ctx_train": es.sim.config.max_model_len})
    return {"/props": es.writer.props(), "/v1/models": _models_list(card)}


def _ollama_documents(es: EngineSimulator) -> dict[str, dict]:
    assert isinstance(es.writer, ollama.OllamaWriter)
    ps = es.writer.ps()
    tags = [
        {k: v for k, v in m.items() if k not in ("expires_at", "size_vram")} for m in ps["models"]
    ]
    return {
        "/api/ps": ps,
        "/api/version": {"version": es.writer.version},
        "/api/tags": {"models": tags},
        "/v1/models": _models_list(_card(es.model, "library")),
    }


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


def _sglang_error(err: ApiError) -> dict:
    kinds = {400: "BadRequestError", 404: "NotFoundError", 429: "TooManyRequestsError"}
    return {
        "object": "error",
        "message": err.message,
        "type": kinds.get(err.status, "InternalServerError"),
        "param": err.param,
        "code": err.status,
    }


def _triton_error(err: ApiError) -> dict:
    return {"error": err.message}


def _llamacpp_error(err: ApiError) -> dict:
    kinds = {400: "invalid_request_error", 404: "not_found_error", 503: "unavailable_error"}
    return {
        "error": {
            "code": err.status,
            "message": err.message,
            "type": kinds.get(err.status, "server_error"),
        }
    }


def _ollama_error(err: ApiError) -> dict:
    kinds = {400: "invalid_request_error", 404: "not_found_error"}
    return {
        "error": {
            "message": err.message,
            "type": kinds.get(err.status, "api_error"),
            "param": err.param,
            "code": None,
        }
    }


ENGINES: dict[str, EngineKind] = {
    "vllm": EngineKind(
        name="vllm",
        title="vLLM V1 0.32",
        config=EngineConfig(),
        default_models=("meta-llama/Llama-3.1-8B-Instruct",),
        writer=_one_model(vllm.VllmWriter),
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
        default_models=("mistralai/Mistral-7B-Instruct-v0.3",),
        writer=_one_model(tgi.TgiWriter),
        documents=_tgi_documents,
        error=_tgi_error,
        validation_status=422,
        generation_error_status=424,
        data_parallel=False,
    ),
    # SGLang 0.5.x: radix (prefix) cache, chunked prefill of 8192 tokens, retractions (this
    # model's preemptions) when the KV pool runs out.
    "sglang": EngineKind(
        name="sglang",
        title="SGLang 0.5.x",
        config=EngineConfig(
            max_num_seqs=128,
            max_num_batched_tokens=8192,
            gpu_memory_utilization=0.85,
            step_overhead=0.011,
        ),
        default_models=("Qwen/Qwen2.5-7B-Instruct",),
        writer=_one_model(sglang.Sglang05Writer),
        documents=_sglang_documents,
        error=_sglang_error,
        validation_status=400,
        generation_error_status=500,
    ),
    # TensorRT-LLM on Triton, as deploy/trtllm runs it: inflight batching with the default
    # `guaranteed_no_evict` policy (a request starts only when its whole KV fits, never
    # preempted), no chunked context, the first-response histogram on.
    "trtllm": EngineKind(
        name="trtllm",
        title="TensorRT-LLM on Triton",
        config=EngineConfig(
            max_num_seqs=64,
            max_num_batched_tokens=8192,
            chunked_prefill=False,
            reserve_full=True,
            step_overhead=0.010,
            decode_per_seq=0.0003,
            prefill_per_token=0.00008,
        ),
        default_models=("tensorrt_llm",),
        writer=_one_model(
            partial(triton.TritonTrtllmWriter, histogram_latencies=True, token_histograms=True)
        ),
        documents=partial(_triton_documents, backend="tensorrtllm"),
        error=_triton_error,
        validation_status=400,
        generation_error_status=500,
    ),
    # Triton serving two models with the vLLM backend, as deploy/triton does: one engine each.
    "triton": EngineKind(
        name="triton",
        title="Triton (vLLM backend)",
        config=EngineConfig(),
        default_models=("llama-3.1-8b-instruct", "qwen2.5-7b-instruct"),
        writer=triton.TritonWriter,
        documents=partial(_triton_documents, backend="vllm"),
        error=_triton_error,
        validation_status=400,
        generation_error_status=500,
        data_parallel=False,
        engine_per_model=True,
    ),
    # llama-server as deploy/llamacpp runs it: 8 slots sharing a 32k context (4096 tokens each,
    # held for the whole request), batches of 2048 prompt tokens, a Q4 8B model.
    "llamacpp": EngineKind(
        name="llamacpp",
        title="llama.cpp",
        config=EngineConfig(
            max_num_seqs=8,
            kv_cache_tokens=32768,
            max_model_len=4096,
            max_num_batched_tokens=2048,
            reserve_full=True,
            step_overhead=0.018,
            decode_per_seq=0.0015,
            prefill_per_token=0.00015,
            gpu_memory_utilization=0.45,
        ),
        default_models=("Llama-3.1-8B-Instruct-Q4_K_M.gguf",),
        writer=_one_model(llamacpp.LlamacppWriter),
        documents=_llamacpp_documents,
        error=_llamacpp_error,
        validation_status=400,
        generation_error_status=500,
        data_parallel=False,
    ),
    # Ollama as deploy/ollama runs it: 4 parallel requests of a 4096-token context each,
    # prompts evaluated 512 tokens at a time.
    "ollama": EngineKind(
        name="ollama",
        title="Ollama",
        config=EngineConfig(
            max_num_seqs=4,
            kv_cache_tokens=16384,
            max_model_len=4096,
            max_num_batched_tokens=512,
            reserve_full=True,
            step_overhead=0.02,
            decode_per_seq=0.002,
            prefill_per_token=0.00015,
            gpu_memory_utilization=0.45,
        ),
        default_models=("llama3.1:8b",),
        writer=_one_model(ollama.OllamaWriter),
        documents=_ollama_documents,
        error=_ollama_error,
        validation_status=400,
        generation_error_status=500,
        data_parallel=False,
        needs_proxy=True,
        ollama_api=True,
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
    models: tuple[str, ...]

    @property
    def model(self) -> str:
        """The served model (the first, where there are several)."""
        return self.models[0]

    def rank_of(self, model: str | None) -> int | None:
        """The engine rank serving `model` where each model has its own; None: any rank."""
        if not self.kind.engine_per_model:
            return None
        return self.models.index(model) if model in self.models else 0


def build(
    engine: str,
    *,
    model: str | None = None,
    models: tuple[str, ...] | None = None,
    load: LoadProfile | None = None,
    workload: Workload | None = None,
    config: EngineConfig | None = None,
    ranks: int = 1,
    seed: int = 0,
) -> EngineSimulator:
    """A simulated server: `model` (or, for engines serving several, `models`) or the kind's
    default, with `ranks` engine cores where the engine has data parallelism."""
    kind = engine_kind(engine)
    names = models or ((model,) if model else kind.default_models)
    if len(names) > 1 and not kind.engine_per_model:
        raise ValueError(f"{kind.title} serves one model, not {len(names)}")
    if ranks > 1 and not kind.data_parallel:
        raise ValueError(f"{kind.title} has no data parallelism: simulate it with one engine rank")
    if kind.engine_per_model:
        ranks = len(names)
    sim = Simulation(config or kind.config, ranks=ranks, load=load, workload=workload, seed=seed)
    return EngineSimulator(kind, sim, kind.writer(sim, tuple(names)), tuple(names))
