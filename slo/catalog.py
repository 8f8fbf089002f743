"""What the capacity planner knows, as data: model architectures, GPUs, weight formats and
which engine offers which quantization.

Every number here comes from a published source, named next to it:

- Architectures are the fields of each model's Hugging Face `config.json` (`num_hidden_layers`,
  `hidden_size`, `num_attention_heads`, `num_key_value_heads`, `head_dim`, `intermediate_size`,
  `vocab_size`, `max_position_embeddings`, `tie_word_embeddings`, experts). The parameter count
  is derived from them (`Architecture.params`), and the tests check it against the counts the
  model cards publish, which catches a mistyped field.
- GPU memory is what `nvidia-smi` reports as total framebuffer (MiB): that, not the marketing
  "GB", is what `--gpu-memory-utilization` is a fraction of.
- Quantization support is the union of the seed's framework table and each engine's own
  documentation (vLLM "Supported Hardware" for quantization kernels, TGI "Quantization",
  SGLang "Quantization", TensorRT Model Optimizer's support matrix, llama.cpp `quantize`,
  Ollama's GGUF file types).
"""

# ruff: noqa: E501  (the model table keeps one model per line, wider than 100 columns)
from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

GIB = 1024**3
MIB = 1024**2

Dtype = Literal["fp16", "bf16", "int8", "fp8", "int4"]
KvDtype = Literal["auto", "fp16", "bf16", "fp8"]
Engine = Literal["vllm", "tgi", "sglang", "trtllm", "llamacpp", "ollama"]

DTYPES: tuple[str, ...] = ("fp16", "bf16", "int8", "fp8", "int4")
ENGINES: tuple[str, ...] = ("vllm", "tgi", "sglang", "trtllm", "llamacpp", "ollama")

# Other spellings users type for the same weight formats.
DTYPE_ALIASES: dict[str, str] = {
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "awq": "int4",
    "gptq": "int4",
    "w4a16": "int4",
    "w8a8": "int8",
    "float8": "fp8",
}


class PlannerError(ValueError):
    """A request the planner cannot answer; the message says what was wrong and where."""


# --- model architectures -------------------------------------------------------------------


class Architecture(BaseModel):
    """The shape of a decoder-only transformer, as its `config.json` states it."""

    model_config = ConfigDict(frozen=True)

    name: str
    hf_id: str | None = None
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int | None
    vocab_size: int | None
    max_position_embeddings: int | None
    tie_word_embeddings: bool = False
    num_experts: int = 1
    experts_per_token: int = 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def embedding_params(self) -> int | None:
        """Token embeddings plus the output head: engines keep these at 16 bits even when
        the rest of the model is quantized (AWQ, GPTQ, FP8 and INT8 checkpoints)."""
        if self.vocab_size is None:
            return None
        tables = 1 if self.tie_word_embeddings else 2
        return tables * self.vocab_size * self.hidden_size

    @computed_field  # type: ignore[prop-decorator]
    @property
    def params(self) -> int | None:
        """Parameter count implied by the shape (gated MLP, as in every model listed here).

        Biases and norm weights are left out: they are under 0.1% of any model here.
        """
        if self.intermediate_size is None or self.embedding_params is None:
            return None
        q_and_o = 2 * self.hidden_size * self.num_attention_heads * self.head_dim
        k_and_v = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        mlp = 3 * self.hidden_size * self.intermediate_size * self.num_experts
        router = self.hidden_size * self.num_experts if self.num_experts > 1 else 0
        return self.num_layers * (q_and_o + k_and_v + mlp + router) + self.embedding_params

    def valid_tensor_parallel(self, size: int) -> bool:
        """vLLM splits attention heads evenly across ranks, and either splits the KV heads
        too or (when there are fewer KV heads than ranks) replicates each of them."""
        heads_split = self.num_attention_heads % size == 0
        kv_split = self.num_kv_heads % size == 0 or size % self.num_kv_heads == 0
        return heads_split and kv_split


# Transcribed from each model's config.json on Hugging Face (the hf column). head_dim is
# stated where config.json states it, else hidden_size / num_attention_heads. Columns:
# name, hf id, layers, hidden, heads, KV heads, head dim, intermediate, vocab, context,
# tied embeddings, experts, experts per token.
# fmt: off
_MODEL_ROWS: tuple[tuple[Any, ...], ...] = (
    ("llama-2-7b", "meta-llama/Llama-2-7b-hf",                 32,  4096,  32, 32, 128, 11008,  32000,   4096, False, 1, 1),
    ("llama-2-13b", "meta-llama/Llama-2-13b-hf",               40,  5120,  40, 40, 128, 13824,  32000,   4096, False, 1, 1),
    ("llama-2-70b", "meta-llama/Llama-2-70b-hf",               80,  8192,  64,  8, 128, 28672,  32000,   4096, False, 1, 1),
    ("codellama-34b", "codellama/CodeLlama-34b-hf",            48,  8192,  64,  8, 128, 22016,  32000,  16384, False, 1, 1),
    ("llama-3-8b", "meta-llama/Meta-Llama-3-8B",               32,  4096,  32,  8, 128, 14336, 128256,   8192, False, 1, 1),
    ("llama-3-70b", "meta-llama/Meta-Llama-3-70B",             80,  8192,  64,  8, 128, 28672, 128256,   8192, False, 1, 1),
    ("llama-3.1-8b", "meta-llama/Llama-3.1-8B",                32,  4096,  32,  8, 128, 14336, 128256, 131072, False, 1, 1),
    ("llama-3.1-70b", "meta-llama/Llama-3.1-70B",              80,  8192,  64,  8, 128, 28672, 128256, 131072, False, 1, 1),
    ("llama-3.1-405b", "meta-llama/Llama-3.1-405B",           126, 16384, 128,  8, 128, 53248, 128256, 131072, False, 1, 1),
    ("mistral-7b", "mistralai/Mistral-7B-Instruct-v0.3",       32,  4096,  32,  8, 128, 14336,  32768,  32768, False, 1, 1),
    ("mixtral-8x7b", "mistralai/Mixtral-8x7B-Instruct-v0.1",   32,  4096,  32,  8, 128, 14336,  32000,  32768, False, 8, 2),
    ("mistral-large-2407", "mistralai/Mistral-Large-Instruct-2407", 88, 12288, 96, 8, 128, 28672, 32768, 131072, False, 1, 1),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct",                 28,  3584,  28,  4, 128, 18944, 152064,  32768, False, 1, 1),
    ("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct",               48,  5120,  40,  8, 128, 13824, 152064,  32768, False, 1, 1),
    ("qwen2.5-32b", "Qwen/Qwen2.5-32B-Instruct",               64,  5120,  40,  8, 128, 27648, 152064,  32768, False, 1, 1),
    ("qwen2.5-72b", "Qwen/Qwen2.5-72B-Instruct",               80,  8192,  64,  8, 128, 29568, 152064,  32768, False, 1, 1),
    ("gemma-2-2b", "google/gemma-2-2b-it",                     26,  2304,   8,  4, 256,  9216, 256000,   8192, True,  1, 1),
    ("gemma-2-9b", "google/gemma-2-9b-it",                     42,  3584,  16,  8, 256, 14336, 256000,   8192, True,  1, 1),
    ("gemma-2-27b", "google/gemma-2-27b-it",                   46,  4608,  32, 16, 128, 36864, 256000,   8192, True,  1, 1),
    ("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct",         32,  3072,  32, 32,  96,  8192,  32064,   4096, False, 1, 1),
    ("phi-3-medium", "microsoft/Phi-3-medium-4k-instruct",     40,  5120,  40, 10, 128, 17920,  32064,   4096, False, 1, 1),
)
# fmt: on

_ROW_FIELDS = (
    "name",
    "hf_id",
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "num_experts",
    "experts_per_token",
)

KNOWN_MODELS: dict[str, Architecture] = {
    row[0]: Architecture(**dict(zip(_ROW_FIELDS, row, strict=True))) for row in _MODEL_ROWS
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9./]+", "-", name.strip().lower()).strip("-")


_VARIANT_SUFFIX = re.compile(r"-(instruct|chat|hf|it|v\d+(\.\d+)?)$")


def _base_name(tail: str) -> str:
    """`meta-llama-3-8b-instruct` -> `llama-3-8b`, `llama-2-7b-chat-hf` -> `llama-2-7b`."""
    tail = tail.removeprefix("meta-")
    while (shorter := _VARIANT_SUFFIX.sub("", tail)) != tail:
        tail = shorter
    return tail


def find_model(name: str) -> Architecture:
    """A known model by short name or Hugging Face id, case-insensitive; the instruct/chat
    variant of a model has the same architecture as its base."""
    wanted = _key(name)
    tail = wanted.rsplit("/", 1)[-1]
    short = _base_name(tail)
    for arch in KNOWN_MODELS.values():
        hf = _key(arch.hf_id or "")
        hf_tail = hf.rsplit("/", 1)[-1]
        if (
            wanted in (arch.name, hf)
            or tail == hf_tail
            or short in (arch.name, _base_name(hf_tail))
        ):
            return arch
    raise PlannerError(
        f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)} "
        "(or give --config config.json, or --params alone)"
    )


# --- reading a Hugging Face config.json ----------------------------------------------------

# Attention variants whose KV cache is not 2 x layers x KV heads x head dim per token.
_UNSUPPORTED_ATTENTION = {
    "kv_lora_rank": "multi-head latent attention (DeepSeek-style)",
    "linear_attn_config": "linear attention",
    "ssm_cfg": "state-space layers",
}


def _field(cfg: dict[str, Any], field: str, source: str, *, required: bool) -> int | None:
    value = cfg.get(field)
    if value is None:
        if required:
            raise PlannerError(f"{source}: missing field {field!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PlannerError(f"{source}: field {field!r} must be a positive integer, got {value!r}")
    return value


def architecture_from_config(cfg: Any, source: str = "config.json") -> Architecture:
    """An Architecture from a Hugging Face `config.json` (already parsed from JSON).

    Multimodal configs keep the language model under `text_config`; GQA models state
    `num_key_value_heads` (absent means one KV head per attention head); `head_dim` is read
    when present (Gemma, Mistral Nemo) and otherwise is hidden_size / num_attention_heads.
    """
    if not isinstance(cfg, dict):
        raise PlannerError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
    text = cfg.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in cfg:
        cfg, source = text, f"{source}: text_config"
    for field, what in _UNSUPPORTED_ATTENTION.items():
        if field in cfg:
            raise PlannerError(
                f"{source}: field {field!r} means {what}; the planner's KV-cache formula does "
                "not apply: plan the weights alone with --params"
            )
    layers = _field(cfg, "num_hidden_layers", source, required=True)
    hidden = _field(cfg, "hidden_size", source, required=True)
    heads = _field(cfg, "num_attention_heads", source, required=True)
    assert layers and hidden and heads  # required=True never returns None
    kv_heads = _field(cfg, "num_key_value_heads", source, required=False) or heads
    if heads % kv_heads:
        raise PlannerError(
            f"{source}: num_attention_heads ({heads}) is not a multiple of "
            f"num_key_value_heads ({kv_heads})"
        )
    head_dim = _field(cfg, "head_dim", source, required=False)
    if head_dim is None:
        if hidden % heads:
            raise PlannerError(
                f"{source}: missing field 'head_dim' and hidden_size ({hidden}) is not a "
                f"multiple of num_attention_heads ({heads})"
            )
        head_dim = hidden // heads
    experts = 1
    for field in ("num_local_experts", "num_experts"):
        experts = _field(cfg, field, source, required=False) or experts
    per_token = _field(cfg, "num_experts_per_tok", source, required=False) or 1
    if experts > 1 and "moe_intermediate_size" in cfg:
        raise PlannerError(
            f"{source}: field 'moe_intermediate_size' means fine-grained experts, whose "
            "parameter count the planner does not derive: add --params"
        )
    tie = cfg.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise PlannerError(f"{source}: field 'tie_word_embeddings' must be true or false")
    name = cfg.get("_name_or_path") or cfg.get("model_type") or "config.json"
    return Architecture(
        name=str(name),
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=_field(cfg, "intermediate_size", source, required=False),
        vocab_size=_field(cfg, "vocab_size", source, required=False),
        max_position_embeddings=_field(cfg, "max_position_embeddings", source, required=False),
        tie_word_embeddings=tie,
        num_experts=experts,
        experts_per_token=min(per_token, experts),
    )


# --- GPUs ----------------------------------------------------------------------------------

# Generations in the order the planner prefers them: it sizes memory, not speed, and the
# older generation is usually the cheaper and easier one to get.
GENERATIONS = ("Ampere", "Ada", "Hopper")


class Gpu(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    memory_mib: int  # total framebuffer as nvidia-smi reports it
    generation: Literal["Ampere", "Ada", "Hopper"]
    compute_capability: str
    fp8: bool  # FP8 tensor cores (compute capability 8.9 and later)
    # Every GPU listed here is Ampere or later: bf16 tensor cores, and the Marlin kernels
    # vLLM and TGI use for 4-bit AWQ/GPTQ weights need compute capability 8.0.
    bf16: bool = True
    int4: bool = True

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB


# Columns: key, name, total MiB (nvidia-smi), generation, compute capability, FP8 cores.
# fmt: off
_GPU_ROWS: tuple[tuple[Any, ...], ...] = (
    ("a10",      "NVIDIA A10 24GB",    23028, "Ampere", "8.6", False),
    ("l4",       "NVIDIA L4 24GB",     23034, "Ada",    "8.9", True),
    ("a100-40g", "NVIDIA A100 40GB",   40960, "Ampere", "8.0", False),
    ("l40s",     "NVIDIA L40S 48GB",   46068, "Ada",    "8.9", True),
    ("a100-80g", "NVIDIA A100 80GB",   81920, "Ampere", "8.0", False),
    ("h100-80g", "NVIDIA H100 80GB",   81559, "Hopper", "9.0", True),
    ("h200",     "NVIDIA H200 141GB", 143771, "Hopper", "9.0", True),
)
# fmt: on

GPUS: dict[str, Gpu] = {
    row[0]: Gpu(
        **dict(
            zip(
                ("key", "name", "memory_mib", "generation", "compute_capability", "fp8"),
                row,
                strict=True,
            )
        )
    )
    for row in _GPU_ROWS
}

_GPU_ALIASES = {
    "a10g": "a10",
    "h100": "h100-80g",
    "h200-141g": "h200",
    "l40s-48g": "l40s",
    "l4-24g": "l4",
    "a10-24g": "a10",
}


def find_gpu(name: str) -> Gpu:
    """A GPU by key, accepting the usual spellings: `A100-80GB`, `nvidia h100`, `a100_40g`."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower()).removeprefix("nvidia-")
    key = re.sub(r"(\d)gb$", r"\1g", key)
    key = _GPU_ALIASES.get(key, key)
    if key in GPUS:
        return GPUS[key]
    close = [k for k in GPUS if key and k.startswith(key + "-")]
    if len(close) == 1:
        return GPUS[close[0]]
    if close:
        raise PlannerError(f"ambiguous GPU {name!r}: say {' or '.join(close)}")
    raise PlannerError(f"unknown GPU {name!r}; known GPUs: {', '.join(GPUS)}")


# --- weight formats ------------------------------------------------------------------------


class WeightFormat(BaseModel):
    """How many bits each parameter takes once loaded, and what the embeddings take."""

    model_config = ConfigDict(frozen=True)

    description: str
    bits: float
    # None: the embeddings and output head are stored like every other weight.
    embedding_bits: float | None = 16.0


# AWQ and GPTQ store 4-bit weights plus, per group of 128, an fp16 scale and a 4-bit zero
# point: 4 + (16 + 4) / 128 bits per weight.
_INT4_BITS = 4 + 20 / 128

_FORMATS: dict[str, WeightFormat] = {
    "fp16": WeightFormat(description="fp16: 2 bytes per parameter", bits=16),
    "bf16": WeightFormat(description="bf16: 2 bytes per parameter", bits=16),
    "fp8": WeightFormat(
        description="fp8 (W8A8): 1 byte per parameter",
        bits=8,
    ),
    "int8": WeightFormat(
        description="int8 (W8A8 / LLM.int8): 1 byte per parameter",
        bits=8,
    ),
    "int4": WeightFormat(
        description="int4 (AWQ/GPTQ, group size 128): 4 bits plus an fp16 "
        "scale and 4-bit zero per 128 weights = 4.16 bits",
        bits=_INT4_BITS,
    ),
}

# llama.cpp and Ollama load GGUF files, whose quantized types carry their own block scales
# (Q8_0: 32 int8 + one fp16 scale = 8.5 bits) and quantize the embeddings too. Q4_K_M's
# 4.84 bits per weight is the whole-model average llama.cpp's quantize README reports.
_GGUF_FORMATS: dict[str, WeightFormat] = {
    "fp16": WeightFormat(description="GGUF F16: 2 bytes per parameter", bits=16),
    "bf16": WeightFormat(description="GGUF BF16: 2 bytes per parameter", bits=16),
    "int8": WeightFormat(
        description="GGUF Q8_0: 8.5 bits per parameter", bits=8.5, embedding_bits=None
    ),
    "int4": WeightFormat(
        description="GGUF Q4_K_M: 4.84 bits per parameter (whole-model average)",
        bits=4.84,
        embedding_bits=None,
    ),
}


def weight_format(dtype: str, engine: str | None) -> WeightFormat:
    if engine in ("llamacpp", "ollama") and dtype in _GGUF_FORMATS:
        return _GGUF_FORMATS[dtype]
    return _FORMATS[dtype]


def kv_bytes_per_element(kv_cache_dtype: str) -> int:
    """`auto` stores the cache in 16 bits whatever the weights are (vLLM's default)."""
    return 1 if kv_cache_dtype == "fp8" else 2


# --- what each engine offers ---------------------------------------------------------------

# dtype -> engine -> the methods that engine documents for it. An engine missing from a
# dtype's row has no format for it.
QUANTIZATION: dict[str, dict[str, tuple[str, ...]]] = {
    "fp16": {
        "vllm": ("--dtype float16",),
        "tgi": ("--dtype float16",),
        "sglang": ("--dtype float16",),
        "trtllm": ("FP16 engine",),
        "llamacpp": ("GGUF F16",),
        "ollama": ("GGUF F16",),
    },
    "bf16": {
        "vllm": ("--dtype bfloat16",),
        "tgi": ("--dtype bfloat16",),
        "sglang": ("--dtype bfloat16",),
        "trtllm": ("BF16 engine",),
        "llamacpp": ("GGUF BF16",),
    },
    "int8": {
        "vllm": ("INT8 W8A8 (compressed-tensors)", "bitsandbytes 8-bit"),
        "tgi": ("bitsandbytes (LLM.int8)", "EETQ"),
        "sglang": ("w8a8_int8",),
        "trtllm": ("INT8 SmoothQuant (W8A8)", "INT8 weight-only (W8A16)"),
        "llamacpp": ("GGUF Q8_0",),
        "ollama": ("GGUF q8_0",),
    },
    "fp8": {
        "vllm": ("FP8 W8A8 (--quantization fp8)",),
        "tgi": ("fp8 (--quantize fp8)",),
        "sglang": ("fp8 (--quantization fp8)",),
        "trtllm": ("FP8",),
    },
    "int4": {
        "vllm": ("AWQ", "GPTQ", "INT4 W4A16 (compressed-tensors)"),
        "tgi": ("GPTQ", "AWQ", "Marlin", "bitsandbytes-nf4"),
        "sglang": ("AWQ", "GPTQ"),
        "trtllm": ("INT4 AWQ (W4A16)", "INT4 GPTQ (W4A16)"),
        "llamacpp": ("GGUF Q4_K_M",),
        "ollama": ("GGUF q4_K_M",),
    },
}


def methods(dtype: str, engine: str | None) -> dict[str, list[str]]:
    """engine -> methods for `dtype`, for one engine or all of them."""
    row = QUANTIZATION[dtype]
    engines = [engine] if engine else list(ENGINES)
    return {e: list(row[e]) for e in engines if e in row}


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple
