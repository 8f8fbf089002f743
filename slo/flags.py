"""The engine flags the advisor tunes: their names, where their current value can be read, and
how to find them in a container spec.

Each flag is spelled as the engine spells it on its command line (`--max-num-seqs`), which is
also the `parameter` of a recommendation. Its current value comes, in this order, from what
the engine states about itself (a label of `llm_engine_info`), from the Deployment's container
(args, command, or for TGI its environment variable), or is unknown; `read_flags` says which.

Defaults are listed only where every supported version agrees (vLLM's
`--gpu-memory-utilization` 0.9, TGI's `--max-concurrent-requests` 128); a flag whose default
depends on the version or the GPU (vLLM V1's `--max-num-seqs`) has none, and an unset flag of
that kind stays unknown rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

GIB = 1024**3

Source = Literal["engine-info", "deployment", "request", "default", "unknown"]


@dataclass(frozen=True)
class Flag:
    engine: str
    name: str  # as on the command line: --max-num-seqs
    kind: type  # int, float or str
    info_label: str | None = None  # the llm_engine_info label stating it
    info_scale: float = 1.0  # info label value x scale = flag value (bytes -> GiB)
    env: str | None = None  # an environment variable the engine also reads (TGI)
    default: float | str | None = None
    help: str = ""

    def parse(self, text: str) -> float | int | str:
        """A value as the flag takes it; ValueError when it is not one."""
        if self.kind is str:
            return text
        number = float(text)
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{self.name} takes a positive number, not {text!r}")
        if self.kind is int:
            if not number.is_integer():
                raise ValueError(f"{self.name} takes an integer, not {text!r}")
            return int(number)
        return number

    def render(self, value: float | int | str) -> str:
        """`--flag=value`, the value without float noise."""
        return f"{self.name}={format_value(value)}"


def format_value(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if not value.is_integer() else str(int(value))
    return str(value)


_FLAGS: tuple[Flag, ...] = (
    # vLLM
    Flag(
        "vllm",
        "--gpu-memory-utilization",
        float,
        "gpu_memory_utilization",
        default=0.9,
        help="share of the GPU's memory vLLM may use (weights, activations, KV cache)",
    ),
    Flag("vllm", "--max-num-seqs", int, "max_num_seqs", help="sequences in the running batch"),
    Flag(
        "vllm",
        "--max-num-batched-tokens",
        int,
        "max_num_batched_tokens",
        help="tokens one engine step may compute (prefill chunks and decodes)",
    ),
    Flag("vllm", "--block-size", int, "block_size", help="tokens per KV-cache block"),
    Flag(
        "vllm",
        "--swap-space",
        float,
        "swap_space_bytes",
        info_scale=1 / GIB,
        help="CPU swap space per GPU in GiB (V0 engines only)",
    ),
    Flag("vllm", "--kv-cache-dtype", str, "kv_cache_dtype", default="auto"),
    Flag("vllm", "--max-model-len", int, "max_model_len"),
    # TGI: every launcher flag is also read from its upper-case environment variable.
    Flag(
        "tgi",
        "--max-batch-total-tokens",
        int,
        "kv_cache_tokens",
        env="MAX_BATCH_TOTAL_TOKENS",
        help="tokens of all running requests together (the KV-cache capacity)",
    ),
    Flag(
        "tgi",
        "--max-concurrent-requests",
        int,
        "max_concurrent_requests",
        env="MAX_CONCURRENT_REQUESTS",
        default=128,
        help="requests in flight before the router refuses new ones (overloaded)",
    ),
    Flag(
        "tgi",
        "--max-waiting-tokens",
        int,
        "max_waiting_tokens",
        env="MAX_WAITING_TOKENS",
        default=20,
        help="decode steps queued requests wait before they are forced into the batch",
    ),
    Flag(
        "tgi",
        "--max-batch-prefill-tokens",
        int,
        "max_num_batched_tokens",
        env="MAX_BATCH_PREFILL_TOKENS",
    ),
    Flag("tgi", "--max-batch-size", int, "max_num_seqs", env="MAX_BATCH_SIZE"),
    Flag("tgi", "--max-total-tokens", int, "max_model_len", env="MAX_TOTAL_TOKENS"),
    # SGLang states none of these on its metrics: the Deployment is the only source.
    Flag(
        "sglang",
        "--mem-fraction-static",
        float,
        help="share of the GPU's memory for weights and the KV-cache pool",
    ),
    Flag("sglang", "--max-running-requests", int, help="requests in the running batch"),
    Flag(
        "sglang",
        "--chunked-prefill-size",
        int,
        help="prompt tokens computed per prefill chunk",
    ),
    Flag("sglang", "--kv-cache-dtype", str, default="auto"),
    Flag("sglang", "--context-length", int, "max_model_len"),
)

FLAGS: dict[tuple[str, str], Flag] = {(f.engine, f.name): f for f in _FLAGS}


def flag(engine: str, name: str) -> Flag:
    try:
        return FLAGS[(engine, name)]
    except KeyError:
        raise KeyError(f"{engine} has no flag {name} in the advisor's table") from None


def engine_flags(engine: str | None) -> tuple[Flag, ...]:
    return tuple(f for f in _FLAGS if f.engine == engine)


# ---- reading a container -----------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a flag is set in a container: `args`/`command` word or `env` entry, by index."""

    field: Literal["args", "command", "env"]
    index: int
    separate: bool = False  # `--flag value` (the value is the next word) vs `--flag=value`


@dataclass(frozen=True)
class Found:
    value: str
    location: Location


def _normal(word: str) -> str:
    # vLLM and SGLang accept `--max_num_seqs` as well as `--max-num-seqs`.
    return "--" + word[2:].replace("_", "-") if word.startswith("--") else word


def find_in_container(container: Mapping[str, Any], wanted: Flag) -> Found | None:
    """Where the container sets a flag (the last occurrence wins, as in argparse); else its
    environment variable; None when it sets neither."""
    found: Found | None = None
    for field_name in ("command", "args"):
        words = container.get(field_name)
        if not isinstance(words, list):
            continue
        for i, raw in enumerate(words):
            word = _normal(str(raw))
            if word == wanted.name and i + 1 < len(words):
                found = Found(str(words[i + 1]), Location(field_name, i, separate=True))  # type: ignore[arg-type]
            elif word.startswith(wanted.name + "="):
                found = Found(word.split("=", 1)[1], Location(field_name, i))  # type: ignore[arg-type]
    if found is not None or wanted.env is None:
        return found
    env = container.get("env")
    for i, item in enumerate(env if isinstance(env, list) else []):
        if isinstance(item, Mapping) and item.get("name") == wanted.env and "value" in item:
            return Found(str(item["value"]), Location("env", i))
    return None


# ---- the current value of every flag -------------------------------------------------------


@dataclass(frozen=True)
class Current:
    """A flag's current value and where it was read (None with source "unknown")."""

    flag: Flag
    value: float | int | str | None
    source: Source
    location: Location | None = None  # set when read from the Deployment
    note: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        if self.value is None:
            return f"{self.flag.name} unknown ({self.note or 'not stated by the engine'})"
        where = {
            "engine-info": "as the engine states it (llm_engine_info)",
            "deployment": "from the Deployment's container",
            "request": "as the request states it",
            "default": "the engine's default (not set in the Deployment)",
            "unknown": "",
        }[self.source]
        return f"{self.flag.render(self.value)} {where}".strip()


def read_flags(
    engine: str | None,
    info: Mapping[str, str],
    container: Mapping[str, Any] | None,
) -> dict[str, Current]:
    """Every advisor flag of `engine` with its current value: the engine's own statement
    first, then the Deployment's container (and the engine default when the container does
    not set it), else unknown."""
    out: dict[str, Current] = {}
    for f in engine_flags(engine):
        out[f.name] = _current(f, info, container)
    return out


def _current(f: Flag, info: Mapping[str, str], container: Mapping[str, Any] | None) -> Current:
    stated = info.get(f.info_label) if f.info_label else None
    deployed = find_in_container(container, f) if container is not None else None
    location = deployed.location if deployed else None
    if stated is not None:
        try:
            value = f.parse(stated)
            if f.info_scale != 1.0 and isinstance(value, int | float):
                value = round(value * f.info_scale, 3)
            note = ""
            if deployed is not None and _differs(f, deployed.value, value):
                note = (
                    f"the Deployment sets {deployed.value}: a rollout may be pending, "
                    "or the engine adjusted it"
                )
            return Current(f, value, "engine-info", location, note)
        except ValueError:
            pass  # an engine stating nonsense is no statement: fall through to the Deployment
    if deployed is not None:
        try:
            return Current(f, f.parse(deployed.value), "deployment", location)
        except ValueError:
            return Current(f, None, "unknown", location, f"the Deployment sets {deployed.value!r}")
    if container is not None:
        if f.default is not None:
            return Current(f, f.default, "default")
        return Current(
            f, None, "unknown", note="not set in the Deployment; the engine picks it at start"
        )
    return Current(
        f,
        None,
        "unknown",
        note="the engine does not state it and the Deployment could not be read",
    )


def _differs(f: Flag, deployed: str, value: float | int | str) -> bool:
    try:
        return f.parse(deployed) != value
    except ValueError:
        return True


def summary_source(currents: Iterable[Current]) -> str:
    """Where the flags came from, in one word list (`engine-info, deployment`)."""
    seen: list[str] = []
    for c in currents:
        if c.source not in seen:
            seen.append(c.source)
    return ", ".join(seen) if seen else "unknown"
