"""The capacity planner: which GPU, how many, and the engine limits that fit.

Per GPU, the arithmetic is the one vLLM does at start-up:

    usable   = GPU memory x --gpu-memory-utilization
    KV cache = usable - weights / (TP x PP) - runtime overhead - activations

and the KV cache must hold at least `concurrency` sequences of `--max-model-len` tokens
(vLLM refuses to start when it cannot hold one). Everything here is a pure function of its
inputs: `plan(...)` returns a `Plan`, a pydantic model with a stable field set that the CLI
prints and the SLO service returns from `POST /v1/plan`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferwatch.slo.catalog import (
    DTYPE_ALIASES,
    DTYPES,
    ENGINES,
    GENERATIONS,
    GIB,
    GPUS,
    Architecture,
    Dtype,
    Engine,
    Gpu,
    KvDtype,
    PlannerError,
    architecture_from_config,
    find_gpu,
    find_model,
    kv_bytes_per_element,
    methods,
    round_up,
    weight_format,
)

# CUDA context, cuBLAS/NCCL workspaces and CUDA graphs, per GPU. vLLM's own profile of
# Llama-3-8B on an H100 logs 1.79 GiB of "non_torch_memory" at TP 1; 2 GiB rounds that up.
RUNTIME_OVERHEAD_BYTES = 2 * GIB
# When the architecture is unknown the activation peak cannot be estimated: this allowance
# stands in for it, and this much at least is left for the KV cache.
ACTIVATION_ALLOWANCE_BYTES = 1 * GIB
MIN_KV_CACHE_BYTES = 1 * GIB
BLOCK_SIZE = 16  # vLLM's PagedAttention block, in tokens (the seed's recommended value)
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default and the seed's recommended --max-num-seqs
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192  # the seed's recommended --max-num-batched-tokens
GPUS_PER_NODE = 8
MAX_NODES = 8
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


class PlanRequest(BaseModel):
    """What to plan for. The same fields are the body of `POST /v1/plan`."""

    model_config = ConfigDict(extra="forbid")

    # 1e15 is far past any model; the bound keeps the arithmetic finite.
    params: float | None = Field(None, gt=0, le=1e15, description="Parameter count, e.g. 70e9.")
    dtype: Dtype = "fp16"
    model: str | None = Field(
        None,
        description="A known model (see `inferwatch plan --list-models`) or its Hugging Face id.",
    )
    config: dict[str, Any] | None = Field(None, description="A Hugging Face config.json.")
    gpu: str | None = Field(None, description="Plan for this GPU; default: choose one.")
    max_model_len: int | None = Field(None, ge=1)
    concurrency: int = Field(
        1, ge=1, description="Sequences of --max-model-len tokens the KV cache must hold at once."
    )
    kv_cache_dtype: KvDtype = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_batched_tokens: int = Field(DEFAULT_MAX_NUM_BATCHED_TOKENS, ge=1)
    engine: Engine | None = Field(
        None, description="Restrict quantization advice to one engine (and use its weight format)."
    )

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return DTYPE_ALIASES.get(value, value)
        return value

    @field_validator("engine", "kv_cache_dtype", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class MemoryBreakdown(BaseModel):
    """Where one GPU's memory goes, in bytes."""

    total_bytes: int
    usable_bytes: int
    weights_bytes: int
    runtime_overhead_bytes: int
    activation_bytes: int
    kv_cache_bytes: int


class GpuOption(BaseModel):
    """How the model fits on one kind of GPU (at most one node of it)."""

    gpu: str
    fits: bool
    gpu_count: int | None
    tensor_parallel_size: int | None
    pipeline_parallel_size: int | None
    kv_cache_tokens: int | None
    reason: str | None


class QuantizationOption(BaseModel):
    """Another weight format, what it would take, and which engines offer it."""

    dtype: str
    weights_bytes: int
    gpu: str | None
    gpu_count: int | None
    methods: dict[str, list[str]]


class Plan(BaseModel):
    model: str | None
    architecture: Architecture | None
    params: int
    dtype: str
    weight_format: str
    engine: str | None
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    concurrency: int
    weights_bytes: int
    embedding_params: int | None
    kv_cache_bytes_per_token: int | None
    gpu: str
    gpu_name: str
    gpu_count: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes: int
    per_gpu: MemoryBreakdown
    kv_cache_bytes_per_token_per_gpu: int | None
    kv_cache_tokens: int | None
    max_model_len: int | None
    max_num_seqs: int | None
    largest_max_model_len: int | None
    vllm_args: list[str]
    options: list[GpuOption]
    quantization: list[QuantizationOption]
    notes: list[str]


# --- the arithmetic ------------------------------------------------------------------------


def weights_bytes(params: int, dtype: str, engine: str | None, arch: Architecture | None) -> int:
    """Bytes of the loaded weights. With a known architecture the embeddings and output head
    are counted at 16 bits when the format keeps them there."""
    fmt = weight_format(dtype, engine)
    embedding = arch.embedding_params if arch else None
    if embedding is None or fmt.embedding_bits is None:
        return math.ceil(params * fmt.bits / 8)
    body = params - embedding
    return math.ceil(body * fmt.bits / 8 + embedding * fmt.embedding_bits / 8)


def kv_cache_bytes_per_token(arch: Architecture, kv_cache_dtype: str = "auto") -> int:
    """2 (K and V) x layers x KV heads x head dim x bytes per element."""
    return (
        2
        * arch.num_layers
        * arch.num_kv_heads
        * arch.head_dim
        * kv_bytes_per_element(kv_cache_dtype)
    )


def _kv_per_token_per_gpu(arch: Architecture, kv_cache_dtype: str, tp: int, pp: int) -> int:
    """Each rank holds its own KV heads (replicated when there are fewer than ranks) for
    its own stage's layers."""
    heads = max(1, arch.num_kv_heads // tp)
    layers = math.ceil(arch.num_layers / pp)
    return 2 * layers * heads * arch.head_dim * kv_bytes_per_element(kv_cache_dtype)


def activation_bytes(
    arch: Architecture | None,
    tp: int,
    max_num_batched_tokens: int,
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
) -> int:
    """Peak activations of one forward pass over a full batch of tokens, per GPU.

    A prefill chunk of `max_num_batched_tokens` tokens holds a few hidden-size tensors
    (residual, norm output, attention in and out: 4 x hidden) and the MLP's gate, up and
    activated outputs (3 x intermediate, split across tensor-parallel ranks, times the
    experts each token visits), all 16-bit; the sampler holds fp32 logits and probabilities
    for every running sequence. For Llama-3-8B this gives 1.15 GiB where vLLM's profile
    logs 1.26 GiB.
    """
    if arch is None or arch.intermediate_size is None or arch.vocab_size is None:
        return ACTIVATION_ALLOWANCE_BYTES
    mlp = 3 * arch.intermediate_size * arch.experts_per_token // tp
    per_token = (4 * arch.hidden_size + mlp) * 2
    logits = max_num_seqs * arch.vocab_size * 4 * 2
    return max_num_batched_tokens * per_token + logits


@dataclass(frozen=True)
class _Fit:
    gpu: Gpu
    tp: int
    pp: int
    memory: MemoryBreakdown
    kv_per_token_per_gpu: int | None
    kv_tokens: int | None

    @property
    def count(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class _Inputs:
    """A validated request, resolved: the architecture, the parameter count, the weights."""

    request: PlanRequest
    arch: Architecture | None
    model: str | None
    params: int
    weights: int
    max_model_len: int | None

    def with_dtype(self, dtype: str) -> _Inputs:
        request = self.request.model_copy(update={"dtype": dtype})
        weights = weights_bytes(self.params, dtype, request.engine, self.arch)
        return _Inputs(request, self.arch, self.model, self.params, weights, self.max_model_len)


def _try(inputs: _Inputs, gpu: Gpu, tp: int, pp: int) -> _Fit | str:
    """The fit of one layout, or why it does not fit."""
    req, arch = inputs.request, inputs.arch
    usable = int(gpu.memory_bytes * req.gpu_memory_utilization)
    share = math.ceil(arch.num_layers / pp) / arch.num_layers if arch else 1 / pp
    weights = math.ceil(inputs.weights * share / tp)
    activations = activation_bytes(arch, tp, req.max_num_batched_tokens)
    kv = usable - weights - RUNTIME_OVERHEAD_BYTES - activations
    memory = MemoryBreakdown(
        total_bytes=gpu.memory_bytes,
        usable_bytes=usable,
        weights_bytes=weights,
        runtime_overhead_bytes=RUNTIME_OVERHEAD_BYTES,
        activation_bytes=activations,
        kv_cache_bytes=max(kv, 0),
    )
    layout = f"{tp * pp} x {gpu.key} (TP {tp}, PP {pp})"
    overhead = RUNTIME_OVERHEAD_BYTES + activations
    if kv <= 0:
        return (
            f"{layout}: weights {_gib(weights)} + overhead {_gib(overhead)} per GPU exceed "
            f"the {_gib(usable)} usable"
        )
    if arch is None or inputs.max_model_len is None:
        if kv < MIN_KV_CACHE_BYTES:
            return (
                f"{layout}: weights {_gib(weights)} + overhead {_gib(overhead)} leave "
                f"{_gib(kv)} of {_gib(usable)} usable, under the "
                f"{_gib(MIN_KV_CACHE_BYTES)} kept for the KV cache"
            )
        return _Fit(gpu, tp, pp, memory, None, None)
    per_token = _kv_per_token_per_gpu(arch, req.kv_cache_dtype, tp, pp)
    tokens = kv // (per_token * BLOCK_SIZE) * BLOCK_SIZE
    needed = req.concurrency * round_up(inputs.max_model_len, BLOCK_SIZE)
    if tokens < needed:
        return (
            f"{layout}: the KV cache holds {tokens:,} tokens ({_gib(kv)}), "
            f"{req.concurrency} x --max-model-len {inputs.max_model_len} needs {needed:,}"
        )
    return _Fit(gpu, tp, pp, memory, per_token, tokens)


def _layouts(arch: Architecture | None, max_gpus: int) -> list[tuple[int, int]]:
    """(TP, PP) pairs by GPU count. Tensor parallelism comes first (it is faster within a
    node); pipeline stages are added only at the largest tensor-parallel size the heads
    allow."""
    sizes = [t for t in TENSOR_PARALLEL_SIZES if arch is None or arch.valid_tensor_parallel(t)]
    pairs = [(t, 1) for t in sizes]
    top = sizes[-1]
    max_stages = arch.num_layers if arch else max_gpus
    pairs += [(top, p) for p in range(2, max_stages + 1) if top * p <= max_gpus]
    return sorted(pairs, key=lambda pair: (pair[0] * pair[1], -pair[0]))


def _fit_on(inputs: _Inputs, gpu: Gpu, max_gpus: int) -> _Fit | str:
    reason = f"no layout of at most {max_gpus} GPUs"
    for tp, pp in _layouts(inputs.arch, max_gpus):
        result = _try(inputs, gpu, tp, pp)
        if isinstance(result, _Fit):
            return result
        reason = result
    return reason


def _natively_supports(gpu: Gpu, dtype: str) -> bool:
    if dtype == "fp8":
        return gpu.fp8
    if dtype == "bf16":
        return gpu.bf16
    if dtype == "int4":
        return gpu.int4
    return True


def _preference(fit: _Fit) -> tuple[int, int, int]:
    """Oldest generation first (the planner sizes memory, not speed), then fewest GPUs,
    then the smallest card."""
    return (GENERATIONS.index(fit.gpu.generation), fit.count, fit.gpu.memory_mib)


def _choose(inputs: _Inputs, gpu: Gpu | None) -> tuple[_Fit | None, str | None]:
    """The best layout: on `gpu` (across nodes if need be), or on the preferred GPU that
    supports the weight format natively, within one node."""
    if gpu is not None:
        result = _fit_on(inputs, gpu, GPUS_PER_NODE * MAX_NODES)
        return (result, None) if isinstance(result, _Fit) else (None, result)
    fits = []
    for candidate in GPUS.values():
        if _natively_supports(candidate, inputs.request.dtype):
            result = _fit_on(inputs, candidate, GPUS_PER_NODE)
            if isinstance(result, _Fit):
                fits.append(result)
    if fits:
        return min(fits, key=_preference), None
    largest = max(GPUS.values(), key=lambda g: g.memory_mib)
    result = _fit_on(inputs, largest, GPUS_PER_NODE)
    return None, result if isinstance(result, str) else None


# --- resolving the request -----------------------------------------------------------------


def _resolve(req: PlanRequest) -> _Inputs:
    if req.model and req.config is not None:
        raise PlannerError("give --model or --config, not both")
    arch: Architecture | None = None
    if req.model:
        arch = find_model(req.model)
    elif req.config is not None:
        arch = architecture_from_config(req.config)
    if req.params is not None:
        params = int(req.params)
    elif arch is not None and arch.params is not None:
        params = arch.params
    elif arch is not None:
        raise PlannerError(
            "config.json has no 'intermediate_size' or 'vocab_size' to derive "
            "the parameter count from: add --params"
        )
    else:
        raise PlannerError("give --params (e.g. 70e9), --model NAME or --config config.json")
    if params < 1_000_000:
        raise PlannerError(
            f"--params {req.params:g} is under a million parameters: "
            "write the count in full, e.g. 7e9 or 7B"
        )
    if req.engine and req.dtype not in _engine_dtypes(req.engine):
        raise PlannerError(
            f"--engine {req.engine} has no {req.dtype} format; it offers: "
            + ", ".join(_engine_dtypes(req.engine))
        )
    max_model_len = req.max_model_len
    if arch is not None:
        limit = arch.max_position_embeddings
        if max_model_len is None:
            if limit is None:
                raise PlannerError(
                    "config.json has no 'max_position_embeddings': give --max-model-len"
                )
            max_model_len = limit
        elif limit is not None and max_model_len > limit:
            raise PlannerError(
                f"--max-model-len {max_model_len} is longer than the model's "
                f"context ({limit:,} tokens, max_position_embeddings)"
            )
    weights = weights_bytes(params, req.dtype, req.engine, arch)
    model = arch.hf_id or arch.name if arch else None
    return _Inputs(req, arch, model, params, weights, max_model_len)


def _engine_dtypes(engine: str) -> list[str]:
    return [d for d in DTYPES if methods(d, engine)]


# --- the plan ------------------------------------------------------------------------------


def plan(
    *,
    params: float | None = None,
    dtype: str = "fp16",
    model: str | None = None,
    config: dict[str, Any] | None = None,
    gpu: str | None = None,
    max_model_len: int | None = None,
    concurrency: int = 1,
    kv_cache_dtype: str = "auto",
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
    engine: str | None = None,
) -> Plan:
    """Plan a deployment; raises PlannerError with a one-line message for bad input."""
    try:
        request = PlanRequest(
            params=params,
            dtype=dtype,
            model=model,
            config=config,
            gpu=gpu,
            max_model_len=max_model_len,
            concurrency=concurrency,
            kv_cache_dtype=kv_cache_dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens,
            engine=engine,
        )
    except ValidationError as exc:
        raise PlannerError(_one_line(exc)) from None
    return plan_request(request)


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = "--" + "-".join(str(part) for part in error["loc"]).replace("_", "-")
    shown = repr(error.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{field} {shown}: {error['msg']}"


def plan_request(request: PlanRequest) -> Plan:
    inputs = _resolve(request)
    wanted_gpu = find_gpu(request.gpu) if request.gpu else None
    fit, reason = _choose(inputs, wanted_gpu)
    if fit is None:
        raise PlannerError(_no_fit_message(inputs, wanted_gpu, reason))
    return _build(inputs, fit, wanted_gpu)


def _no_fit_message(inputs: _Inputs, gpu: Gpu | None, reason: str | None) -> str:
    req = inputs.request
    where = (
        f"{GPUS_PER_NODE * MAX_NODES} x {gpu.key}"
        if gpu
        else f"{GPUS_PER_NODE} of any GPU ({GPUS_PER_NODE} x "
        f"{max(GPUS.values(), key=lambda g: g.memory_mib).key} is the largest)"
    )
    message = (
        f"{inputs.model or f'{inputs.params / 1e9:g}B parameters'} at {req.dtype} "
        f"({_gb(inputs.weights)} of weights) does not fit on {where}"
    )
    if reason:
        message += f": {reason}"
    smaller = [
        o
        for o in _quantization_options(inputs, gpu)
        if o.gpu_count is not None and o.weights_bytes < inputs.weights
    ]
    if smaller:
        message += "; " + ", ".join(f"{o.dtype} fits on {o.gpu_count} x {o.gpu}" for o in smaller)
    elif inputs.max_model_len and inputs.arch:
        message += "; try a shorter --max-model-len"
    return message


def _build(inputs: _Inputs, fit: _Fit, wanted_gpu: Gpu | None) -> Plan:
    req, arch = inputs.request, inputs.arch
    max_num_seqs = largest_len = None
    if fit.kv_tokens is not None and inputs.max_model_len is not None:
        max_num_seqs = fit.kv_tokens // round_up(inputs.max_model_len, BLOCK_SIZE)
        limit = arch.max_position_embeddings if arch else None
        largest_len = min(fit.kv_tokens, limit) if limit else fit.kv_tokens
    nodes = math.ceil(fit.count / GPUS_PER_NODE)
    return Plan(
        model=inputs.model,
        architecture=arch,
        params=inputs.params,
        dtype=req.dtype,
        weight_format=weight_format(req.dtype, req.engine).description,
        engine=req.engine,
        kv_cache_dtype=req.kv_cache_dtype,
        gpu_memory_utilization=req.gpu_memory_utilization,
        max_num_batched_tokens=req.max_num_batched_tokens,
        concurrency=req.concurrency,
        weights_bytes=inputs.weights,
        embedding_params=arch.embedding_params if arch else None,
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(arch, req.kv_cache_dtype)
        if arch
        else None,
        gpu=fit.gpu.key,
        gpu_name=fit.gpu.name,
        gpu_count=fit.count,
        tensor_parallel_size=fit.tp,
        pipeline_parallel_size=fit.pp,
        nodes=nodes,
        per_gpu=fit.memory,
        kv_cache_bytes_per_token_per_gpu=fit.kv_per_token_per_gpu,
        kv_cache_tokens=fit.kv_tokens,
        max_model_len=inputs.max_model_len if arch else None,
        max_num_seqs=max_num_seqs,
        largest_max_model_len=largest_len,
        vllm_args=_vllm_args(inputs, fit, max_num_seqs),
        options=_options(inputs),
        quantization=_quantization_options(inputs, wanted_gpu),
        notes=_notes(inputs, fit, nodes, max_num_seqs, largest_len),
    )


def _vllm_args(inputs: _Inputs, fit: _Fit, max_num_seqs: int | None) -> list[str]:
    req = inputs.request
    args = [f"--tensor-parallel-size={fit.tp}"]
    if fit.pp > 1:
        args.append(f"--pipeline-parallel-size={fit.pp}")
    if inputs.arch is not None and inputs.max_model_len is not None:
        args.append(f"--max-model-len={inputs.max_model_len}")
    if max_num_seqs is not None:
        args.append(f"--max-num-seqs={min(max_num_seqs, DEFAULT_MAX_NUM_SEQS)}")
    args.append(f"--gpu-memory-utilization={req.gpu_memory_utilization:g}")
    args.append(f"--max-num-batched-tokens={req.max_num_batched_tokens}")
    if req.dtype in ("fp16", "bf16"):
        args.append(f"--dtype={'float16' if req.dtype == 'fp16' else 'bfloat16'}")
    elif req.dtype == "fp8":
        args.append("--quantization=fp8")
    if req.kv_cache_dtype == "fp8":
        args.append("--kv-cache-dtype=fp8")
    return args


def _options(inputs: _Inputs) -> list[GpuOption]:
    rows = []
    for gpu in GPUS.values():
        result = _fit_on(inputs, gpu, GPUS_PER_NODE)
        if isinstance(result, _Fit):
            rows.append(
                GpuOption(
                    gpu=gpu.key,
                    fits=True,
                    gpu_count=result.count,
                    tensor_parallel_size=result.tp,
                    pipeline_parallel_size=result.pp,
                    kv_cache_tokens=result.kv_tokens,
                    reason=None,
                )
            )
        else:
            rows.append(
                GpuOption(
                    gpu=gpu.key,
                    fits=False,
                    gpu_count=None,
                    tensor_parallel_size=None,
                    pipeline_parallel_size=None,
                    kv_cache_tokens=None,
                    reason=result,
                )
            )
    return rows


def _quantization_options(inputs: _Inputs, gpu: Gpu | None) -> list[QuantizationOption]:
    """Every weight format the engine(s) offer, sized and placed like the request."""
    out = []
    for dtype in DTYPES:
        offered = methods(dtype, inputs.request.engine)
        if not offered:
            continue
        other = inputs.with_dtype(dtype)
        fit, _ = _choose(other, gpu)
        out.append(
            QuantizationOption(
                dtype=dtype,
                weights_bytes=other.weights,
                gpu=fit.gpu.key if fit else None,
                gpu_count=fit.count if fit else None,
                methods=offered,
            )
        )
    return out


def _notes(
    inputs: _Inputs, fit: _Fit, nodes: int, max_num_seqs: int | None, largest_len: int | None
) -> list[str]:
    req, arch = inputs.request, inputs.arch
    notes = [
        "weights_bytes is the weights alone, the figure the seed's VRAM table gives (7B "
        "about 14/7/4 GB at FP16/INT8/INT4); a server also needs the runtime overhead, "
        "activations and the KV cache counted per GPU."
    ]
    if arch is None:
        notes.append(
            "Architecture unknown: the KV cache is not sized (at least "
            f"{_gib(MIN_KV_CACHE_BYTES)} per GPU is left for it) and activations "
            f"are taken as {_gib(ACTIVATION_ALLOWANCE_BYTES)}. Give --model or "
            "--config to size them and to get --max-model-len and --max-num-seqs."
        )
        ignored = [
            flag
            for flag, given in (
                ("--max-model-len", req.max_model_len is not None),
                ("--concurrency", req.concurrency != 1),
                ("--kv-cache-dtype", req.kv_cache_dtype != "auto"),
            )
            if given
        ]
        if ignored:
            notes.append(f"{', '.join(ignored)} need the architecture and were not used.")
    if req.engine not in (None, "vllm"):
        notes.append(
            f"The flags are vLLM's; docs/planner.md maps each to its {req.engine} equivalent."
        )
    if not _natively_supports(fit.gpu, req.dtype):
        notes.append(
            f"{fit.gpu.name} ({fit.gpu.generation}) has no FP8 tensor cores: vLLM "
            "runs FP8 checkpoints there as weight-only W8A16 (FP8 Marlin), which "
            "saves the memory planned here but not the compute; FP8 on TGI, SGLang "
            "and TensorRT-LLM needs Ada or Hopper."
        )
    if nodes > 1:
        notes.append(
            f"{fit.count} GPUs span {nodes} nodes of {GPUS_PER_NODE}: pipeline "
            f"parallelism ({fit.pp} stages) across nodes needs a multi-node setup "
            "(vLLM on Ray, or a LeaderWorkerSet on Kubernetes)."
        )
    elif fit.pp > 1:
        notes.append(
            f"Pipeline parallel {fit.pp}: the attention heads allow tensor parallel "
            f"up to {fit.tp} only."
        )
    if arch is not None and arch.num_experts > 1:
        notes.append(
            f"Mixture of experts: all {arch.num_experts} experts are loaded, so "
            "the weights count every expert although each token uses "
            f"{arch.experts_per_token}."
        )
    if max_num_seqs is not None and max_num_seqs > DEFAULT_MAX_NUM_SEQS:
        notes.append(
            f"The KV cache holds {max_num_seqs} sequences of the full length; "
            f"--max-num-seqs stays at {DEFAULT_MAX_NUM_SEQS} (vLLM's default) "
            "because the sampler's memory grows with it. Most requests are shorter "
            "than --max-model-len, so more than that many can run at once."
        )
    if (
        largest_len is not None
        and arch is not None
        and arch.max_position_embeddings
        and largest_len < arch.max_position_embeddings
    ):
        notes.append(
            f"One sequence can be at most {largest_len:,} tokens here, less than "
            f"the model's {arch.max_position_embeddings:,}."
        )
    return notes


# --- the text report -----------------------------------------------------------------------


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def _gib(n: float) -> str:
    return f"{n / GIB:,.2f} GiB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _params(n: float) -> str:
    return f"{n / 1e9:,.2f}B"


def render_text(p: Plan) -> str:
    """A readable report that shows the arithmetic behind every figure."""
    arch = p.architecture
    fmt = weight_format(p.dtype, p.engine)
    lines = [
        f"Capacity plan: {p.model or _params(p.params) + ' parameters'}, {p.dtype} "
        f"weights, {'16-bit' if p.kv_cache_dtype == 'auto' else p.kv_cache_dtype} "
        "KV cache",
        "",
        "Weights (what the seed's VRAM table lists)",
    ]
    if (
        p.embedding_params is not None
        and fmt.embedding_bits is not None
        and fmt.embedding_bits != fmt.bits
    ):
        body = p.params - p.embedding_params
        lines.append(
            f"  {_params(body)} x {fmt.bits / 8:.4g} B + {_params(p.embedding_params)}"
            f" embedding/output x {fmt.embedding_bits / 8:g} B = {_gb(p.weights_bytes)}"
            f" ({_gib(p.weights_bytes)})"
        )
    else:
        lines.append(
            f"  {_params(p.params)} parameters x {fmt.bits / 8:.4g} B = "
            f"{_gb(p.weights_bytes)} ({_gib(p.weights_bytes)})"
        )
    lines.append(f"  format: {p.weight_format}")
    if fmt.embedding_bits is not None and fmt.embedding_bits != fmt.bits:
        lines.append(
            "  (engines keep the embeddings and output head at 16 bits; counted when the "
            "architecture is known)"
        )
    lines.append("")
    if arch is not None and p.kv_cache_bytes_per_token is not None:
        kv_bytes = kv_bytes_per_element(p.kv_cache_dtype)
        lines += [
            "KV cache per token",
            f"  2 (K, V) x {arch.num_layers} layers x {arch.num_kv_heads} KV heads x "
            f"{arch.head_dim} head dim x {kv_bytes} B = {p.kv_cache_bytes_per_token:,} B "
            f"({p.kv_cache_bytes_per_token / 1024:,.0f} KiB)",
            "",
        ]
    m = p.per_gpu
    layout = f"tensor parallel {p.tensor_parallel_size}"
    if p.pipeline_parallel_size > 1:
        layout += f", pipeline parallel {p.pipeline_parallel_size}"
    lines += [
        f"GPU: {p.gpu_count} x {p.gpu_name} ({layout}; {_plural(p.nodes, 'node')})",
        f"  per GPU  {_gib(m.total_bytes)} x {p.gpu_memory_utilization:g} "
        f"(--gpu-memory-utilization) = {_gib(m.usable_bytes)} usable",
        f"         - weights                 {_gib(m.weights_bytes)}",
        f"         - runtime overhead        {_gib(m.runtime_overhead_bytes)}"
        "  (CUDA context, cuBLAS/NCCL workspaces, CUDA graphs)",
        f"         - activations             {_gib(m.activation_bytes)}"
        f"  ({p.max_num_batched_tokens} batched tokens, {DEFAULT_MAX_NUM_SEQS} sequences)",
        f"         = KV cache                {_gib(m.kv_cache_bytes)}",
    ]
    if p.kv_cache_tokens is not None and p.kv_cache_bytes_per_token_per_gpu:
        lines.append(
            f"  KV cache: {_gib(m.kv_cache_bytes)} / "
            f"{p.kv_cache_bytes_per_token_per_gpu:,} B per token per GPU = "
            f"{p.kv_cache_tokens:,} tokens (blocks of {BLOCK_SIZE})"
        )
        lines.append(
            f"  at --max-model-len {p.max_model_len}: up to "
            f"{_plural(p.max_num_seqs or 0, 'sequence')} at once; one sequence can be up to "
            f"{p.largest_max_model_len:,} tokens"
        )
    lines += [
        "",
        "vLLM flags",
        "  " + " ".join(p.vllm_args),
        "",
        f"Every GPU (at most one node, {p.dtype})",
    ]
    for o in p.options:
        if not o.fits:
            lines.append(f"  {o.gpu:<9} does not fit: {o.reason}")
            continue
        row = f"  {o.gpu:<9} {_plural(o.gpu_count or 0, 'GPU')}, TP {o.tensor_parallel_size}"
        if (o.pipeline_parallel_size or 1) > 1:
            row += f", PP {o.pipeline_parallel_size}"
        if o.kv_cache_tokens is not None:
            row += f", {o.kv_cache_tokens:,} KV tokens"
        if o.gpu == p.gpu and o.gpu_count == p.gpu_count:
            row += "  <- planned"
        lines.append(row)
    lines += ["", "Quantization (which engine offers each format)"]
    for q in p.quantization:
        where = f"{q.gpu_count} x {q.gpu}" if q.gpu_count else "does not fit"
        lines.append(f"  {q.dtype:<5} {_gb(q.weights_bytes):>10}  {where}")
        lines += [f"        {e:<9} {', '.join(ms)}" for e, ms in q.methods.items()]
    missing = [
        e
        for e in ([p.engine] if p.engine else ENGINES)
        if not any(e in q.methods for q in p.quantization if q.dtype == p.dtype)
    ]
    if missing:
        lines.append(f"  no {p.dtype} format on: {', '.join(missing)}")
    lines += ["", "Notes"] + [f"  - {n}" for n in p.notes]
    return "\n".join(lines) + "\n"
