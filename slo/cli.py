"""Commands of the SLO package: `inferwatch plan`, the capacity planner."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmbt]?)\s*$", re.IGNORECASE)


def _fail(command: str, message: str) -> typer.Exit:
    """One line on stderr and exit code 2: bad input never ends in a traceback."""
    typer.echo(f"inferwatch {command}: {message}", err=True)
    return typer.Exit(2)


def parse_count(text: str) -> float:
    """`70e9`, `70B`, `7.6b`, `405000000000`, `1.5T` -> a number."""
    match = _COUNT.match(text)
    if match is None:
        raise ValueError(f"--params {text!r}: expected a count like 70e9, 70B or 7.6b")
    mantissa, exponent, suffix = match.groups()
    return float(mantissa) * 10 ** int(exponent or 0) * _SUFFIXES[suffix.lower()]


def _read_config(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def plan(
    params: str = typer.Option(None, "--params", help="Parameter count: 70e9, 70B, 7.6b."),
    dtype: str = typer.Option(
        "fp16", "--dtype", help="Weights: fp16, bf16, int8, fp8 or int4 (AWQ/GPTQ)."
    ),
    model: str = typer.Option(
        None, "--model", help="A known model (--list-models) or its Hugging Face id."
    ),
    config: Path = typer.Option(None, "--config", help="A model's Hugging Face config.json."),
    gpu: str = typer.Option(
        None, "--gpu", help="Plan for this GPU (--list-gpus); default: choose."
    ),
    max_model_len: int = typer.Option(
        None, "--max-model-len", help="Tokens per sequence; default: the model's context."
    ),
    concurrency: int = typer.Option(
        1, "--concurrency", help="Full-length sequences the KV cache must hold at once."
    ),
    kv_cache_dtype: str = typer.Option(
        "auto", "--kv-cache-dtype", help="auto (16-bit), fp16, bf16 or fp8."
    ),
    gpu_memory_utilization: float = typer.Option(
        0.9, "--gpu-memory-utilization", help="Share of each GPU's memory the engine may use."
    ),
    max_num_batched_tokens: int = typer.Option(
        8192, "--max-num-batched-tokens", help="Tokens in one forward pass (sizes activations)."
    ),
    engine: str = typer.Option(
        None, "--engine", help="vllm, tgi, sglang, trtllm, llamacpp or ollama: its formats only."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    list_models: bool = typer.Option(False, "--list-models", help="List the known models."),
    list_gpus: bool = typer.Option(False, "--list-gpus", help="List the known GPUs."),
) -> None:
    """Size a deployment: weights, KV cache, which GPU, how many, and the vLLM flags."""
    try:
        from inferwatch.slo import catalog, planner
    except ImportError as exc:
        raise _fail(
            "plan", f"needs the slo extra ({exc.name} is missing): pip install 'inferwatch[slo]'"
        ) from None

    if list_models or list_gpus:
        sys.stdout.write(_models_table(catalog) if list_models else _gpus_table(catalog))
        return
    try:
        count = parse_count(params) if params is not None else None
        cfg = _read_config(config) if config is not None else None
        result = planner.plan(
            params=count, dtype=dtype, model=model, config=cfg, gpu=gpu,
            max_model_len=max_model_len, concurrency=concurrency,
            kv_cache_dtype=kv_cache_dtype, gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens, engine=engine,
        )  # fmt: skip
    except ValueError as exc:  # PlannerError is a ValueError
        message = str(exc)
        if config is not None and message.startswith("config.json"):
            message = str(config) + message.removeprefix("config.json")
        raise _fail("plan", message) from None
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(planner.render_text(result))


def _models_table(catalog: Any) -> str:
    lines = [
        f"{'model':<19} {'params':>8} {'layers':>6} {'heads':>5} {'kv':>3} {'hdim':>4} "
        f"{'context':>7} {'KV/token':>9}  hugging face id"
    ]
    for a in catalog.KNOWN_MODELS.values():
        kv = 2 * a.num_layers * a.num_kv_heads * a.head_dim * 2
        lines.append(
            f"{a.name:<19} {a.params / 1e9:>7.2f}B {a.num_layers:>6} {a.num_attention_heads:>5} "
            f"{a.num_kv_heads:>3} {a.head_dim:>4} {a.max_position_embeddings:>7} "
            f"{kv // 1024:>6} KiB  {a.hf_id}"
        )
    return "\n".join(lines) + "\n"


def _gpus_table(catalog: Any) -> str:
    lines = [f"{'gpu':<9} {'name':<18} {'memory':>10} {'generation':<10} {'cc':<4} fp8"]
    for g in catalog.GPUS.values():
        lines.append(
            f"{g.key:<9} {g.name:<18} {g.memory_mib:>6} MiB {g.generation:<10} "
            f"{g.compute_capability:<4} {'yes' if g.fp8 else 'no'}"
        )
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
