"""What inferwatch knows about each engine's container: how to recognise it and where it listens.

The injector reads a container's image, command, args, env and ports and asks this table which
engine it runs, which port serves the engine's metrics, and what model it serves. Plain data
and small functions, no Kubernetes client: the admission webhook runs in the sidecar image.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any


@dataclass(frozen=True)
class Engine:
    name: str
    # Lower-case fragments of the image reference or of a command/args token.
    image_hints: tuple[str, ...]
    command_hints: tuple[str, ...]
    # The port the engine's /metrics is served on when nothing says otherwise.
    default_port: int
    port_flags: tuple[str, ...] = ("--port",)
    port_env: tuple[str, ...] = ()
    # Flags/env naming the model when the engine does not put it on its metrics.
    model_flags: tuple[str, ...] = ()
    model_env: tuple[str, ...] = ()
    # The engine only serves /metrics with one of these flags (or env vars) set.
    metrics_switches: tuple[str, ...] = ()
    # Ollama has no /metrics: its sidecar proxies the API and measures the traffic.
    proxy: bool = False
    # Named container ports that point at the metrics port.
    port_names: tuple[str, ...] = ("http",)


ENGINE_TABLE: dict[str, Engine] = {
    e.name: e
    for e in (
        # Order matters: Triton images carry "vllm"/"trtllm" in backend tags, so the Triton
        # flavours are tried before vLLM.
        Engine(
            "trtllm",
            image_hints=("trtllm", "tensorrtllm", "tensorrt-llm", "tensorrt_llm"),
            command_hints=("tensorrtllm_backend", "launch_triton_server.py"),
            default_port=8002,
            port_flags=("--metrics-port",),
            port_names=("metrics",),
        ),
        Engine(
            "triton",
            image_hints=("tritonserver",),
            command_hints=("tritonserver",),
            default_port=8002,
            port_flags=("--metrics-port",),
            port_names=("metrics",),
        ),
        Engine(
            "vllm",
            image_hints=("vllm",),
            command_hints=("vllm", "vllm.entrypoints.openai.api_server"),
            default_port=8000,
        ),
        Engine(
            "sglang",
            image_hints=("sglang",),
            command_hints=("sglang.launch_server", "sglang"),
            default_port=30000,
            metrics_switches=("--enable-metrics", "SGLANG_ENABLE_METRICS"),
        ),
        Engine(
            "tgi",
            image_hints=("text-generation-inference", "huggingface/tgi"),
            command_hints=("text-generation-launcher",),
            # The official image sets PORT=80; the bare launcher defaults to 3000.
            default_port=80,
            port_env=("PORT",),
            model_flags=("--model-id",),
            model_env=("MODEL_ID",),
        ),
        Engine(
            "llamacpp",
            image_hints=("llama.cpp", "llama-cpp", "llamacpp"),
            command_hints=("llama-server", "llama.cpp"),
            default_port=8080,
            port_env=("LLAMA_ARG_PORT",),
            model_flags=("--alias", "-a"),
            model_env=("LLAMA_ARG_ALIAS",),
            metrics_switches=("--metrics", "LLAMA_ARG_ENDPOINT_METRICS"),
        ),
        Engine(
            "ollama",
            image_hints=("ollama",),
            command_hints=("ollama",),
            default_port=11434,
            port_flags=(),
            port_env=("OLLAMA_HOST",),
            proxy=True,
        ),
    )
}


@dataclass(frozen=True)
class Detected:
    """An engine found in a container, with where its metrics are and what it serves."""

    engine: Engine
    port: int
    model: str | None = None
    warnings: tuple[str, ...] = field(default=())


def get(name: str) -> Engine:
    try:
        return ENGINE_TABLE[name]
    except KeyError:
        known = ", ".join(ENGINE_TABLE)
        raise ValueError(f"unknown engine {name!r}; known: {known}") from None


def tokens(container: dict[str, Any]) -> list[str]:
    """The container's command and args as words; `sh -c "..."` scripts are split too."""
    words: list[str] = []
    items: list[Any] = []
    for key in ("command", "args"):
        value = container.get(key)
        items += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    for item in items:
        text = str(item)
        if any(ch.isspace() for ch in text.strip()):
            try:
                words.extend(shlex.split(text))
            except ValueError:
                words.extend(text.split())
        else:
            words.append(text)
    return words


def matches(engine: Engine, container: dict[str, Any]) -> bool:
    image = str(container.get("image") or "").lower()
    if any(h in image for h in engine.image_hints):
        return True
    for word in tokens(container):
        word = word.lower()
        base = PurePosixPath(word).name
        if any(h in (base, word) or (len(h) > 6 and h in word) for h in engine.command_hints):
            return True
    return False


def identify(container: dict[str, Any]) -> Engine | None:
    """The first engine of the table whose hints the container matches."""
    for engine in ENGINE_TABLE.values():
        if matches(engine, container):
            return engine
    return None


def flag_value(words: list[str], flags: tuple[str, ...]) -> str | None:
    """The value of the last `--flag value` or `--flag=value` among the words."""
    found = None
    for i, word in enumerate(words):
        for flag in flags:
            if word == flag and i + 1 < len(words):
                found = words[i + 1]
            elif word.startswith(flag + "="):
                found = word[len(flag) + 1 :]
    return found


def env_value(container: dict[str, Any], names: tuple[str, ...]) -> str | None:
    env = container.get("env")
    for item in env if isinstance(env, list) else []:
        if isinstance(item, dict) and item.get("name") in names and "value" in item:
            return str(item["value"])
    return None


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    # OLLAMA_HOST may be "0.0.0.0:11434" or "http://host:port".
    text = text.rstrip("/").rpartition(":")[2] if ":" in text else text
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _declared_port(engine: Engine, container: dict[str, Any]) -> int | None:
    declared = container.get("ports")
    ports = [p for p in declared if isinstance(p, dict)] if isinstance(declared, list) else []
    for p in ports:
        if p.get("name") in engine.port_names and isinstance(p.get("containerPort"), int):
            return p["containerPort"]
    numbers = [p.get("containerPort") for p in ports]
    if engine.default_port in numbers:
        return engine.default_port
    # One declared port on an engine that serves metrics on its API port: that is the one.
    if len(numbers) == 1 and isinstance(numbers[0], int) and engine.port_names == ("http",):
        return numbers[0]
    return None


def detect(engine: Engine, container: dict[str, Any]) -> Detected:
    """Where this engine's metrics (or API, for the proxy) are, and the model it serves."""
    words = tokens(container)
    port = (
        _port(flag_value(words, engine.port_flags))
        or _port(env_value(container, engine.port_env))
        or _declared_port(engine, container)
        or engine.default_port
    )
    model = flag_value(words, engine.model_flags) or env_value(container, engine.model_env)
    if model is None and engine.name == "llamacpp":
        path = flag_value(words, ("-m", "--model")) or env_value(container, ("LLAMA_ARG_MODEL",))
        model = PurePosixPath(path).stem if path else None
    if model and model.startswith("/"):
        model = PurePosixPath(model).name
    warnings = []
    if engine.metrics_switches and not _switched_on(engine, words, container):
        warnings.append(
            f"{engine.name} serves /metrics only when started with "
            f"{' or '.join(engine.metrics_switches)}; add it to container "
            f"{container.get('name')!r}"
        )
    return Detected(engine, port, model or None, tuple(warnings))


def _switched_on(engine: Engine, words: list[str], container: dict[str, Any]) -> bool:
    flags = tuple(s for s in engine.metrics_switches if s.startswith("-"))
    envs = tuple(s for s in engine.metrics_switches if not s.startswith("-"))
    if any(w in flags or w.split("=", 1)[0] in flags for w in words):
        return True
    value = env_value(container, envs)
    return value is not None and value.lower() not in ("", "0", "false", "no", "off")
