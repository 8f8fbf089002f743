"""Commands of the SLO package: `inferwatch plan` (the capacity planner), `inferwatch slo serve`
(the SLO service) and `inferwatch advise` (the tuning advisor, from Prometheus or straight from
an engine's /metrics). Heavy imports stay inside the commands: `inferwatch --help` loads none."""

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


# ---- inferwatch slo serve -------------------------------------------------------------------

slo_app = typer.Typer(help="The SLO service: SLIs, error budgets, burn rates, advice.")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail("slo serve", f"--listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


@slo_app.command("serve")
def serve(
    prometheus: str = typer.Option(
        None, "--prometheus", help="Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL."
    ),
    config: list[Path] = typer.Option(
        [], "--config", help="SLO spec file or directory (repeatable)."
    ),
    listen: str = typer.Option("0.0.0.0:8080", "--listen", help="HOST:PORT to serve on."),
    window: str = typer.Option(None, "--window", help="The advisor's window (default 6h)."),
    timeout: float = typer.Option(
        None, "--timeout", help="Seconds a request waits for Prometheus (default 4.5)."
    ),
    kubernetes: str = typer.Option(
        None, "--kubernetes", help="auto (read Deployments in-cluster or by kubeconfig) or off."
    ),
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="Kubeconfig file to read."),
    keda_prometheus: str = typer.Option(
        None, "--keda-prometheus-url", help="Prometheus URL KEDA uses (default: --prometheus)."
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve the SLO API and page. The bearer token comes from INFERWATCH_SLO_TOKEN."""
    try:
        import uvicorn

        from inferwatch.slo.app import build_service, create_app
        from inferwatch.slo.settings import Settings
        from inferwatch.slo.spec import SpecError
    except ImportError as exc:
        raise _fail("slo serve", f"needs the slo extra ({exc.name} is missing)") from None
    from pydantic import ValidationError

    host, port = _listen(listen)
    given = {
        "prometheus_url": prometheus,
        "config": config or None,
        "window": window,
        "timeout": timeout,
        "kubernetes": kubernetes,
        "kubeconfig": kubeconfig,
        "keda_prometheus_url": keda_prometheus,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
        service, note = build_service(settings)
    except ValidationError as exc:
        raise _fail("slo serve", _settings_error(exc)) from None
    except SpecError as exc:
        raise _fail("slo serve", f"refusing the SLO specs:\n{exc}") from None
    except ValueError as exc:
        raise _fail("slo serve", str(exc)) from None
    if note:
        typer.echo(f"inferwatch slo serve: {note}", err=True)
    typer.echo(
        f"inferwatch slo serve: {len(service.specs)} SLO(s), Prometheus {settings.prometheus_url},"
        f" http://{host}:{port}/",
        err=True,
    )
    uvicorn.run(create_app(settings, service), host=host, port=port, log_level=log_level)


def _settings_error(exc: Any) -> str:
    parts = []
    for e in exc.errors():
        field = "--" + "-".join(str(p) for p in e["loc"]).replace("_", "-")
        if field == "--prometheus-url":
            field = "--prometheus (or INFERWATCH_SLO_PROMETHEUS_URL)"
        parts.append(f"{field}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# ---- inferwatch advise ----------------------------------------------------------------------


_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(flag: str, text: str) -> float:
    """`60s`, `0.5s`, `500ms`, `5m`, `1h30m` or plain seconds."""
    from inferwatch.alerts import promql

    text = text.strip()
    simple = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    try:
        if simple:
            value = float(simple.group(1)) * _UNITS[simple.group(2) or ""]
        else:
            value = float(promql.seconds(promql.validate_duration(text)))
    except ValueError:
        raise _fail(
            "advise", f"{flag} {text!r}: expected a duration such as 60s, 0.5s, 5m, 1h"
        ) from None
    if value <= 0:
        raise _fail("advise", f"{flag} {text!r}: must be positive")
    return value


def advise(
    upstream: str = typer.Option(
        None, "--upstream", help="An engine's base URL or /metrics URL: sample it directly."
    ),
    prometheus: str = typer.Option(
        None, "--prometheus", help="Read the deployment's history from Prometheus instead."
    ),
    namespace: str = typer.Option(None, "--namespace", help="The deployment's namespace."),
    deployment: str = typer.Option(None, "--deployment", help="The deployment's name."),
    window: str = typer.Option(
        None, "--window", help="How long to look: default 60s sampled, 6h from Prometheus."
    ),
    interval: str = typer.Option("5s", "--interval", help="Sampling interval (--upstream)."),
    engine: str = typer.Option("auto", "--engine", help="auto (detect) or an engine (--upstream)."),
    model: str = typer.Option(None, "--model", help="Model name, for engines that do not say."),
    dcgm: str = typer.Option(
        None, "--dcgm", help="dcgm-exporter's URL, for GPU memory (--upstream)."
    ),
    config: list[Path] = typer.Option(
        [], "--config", help="SLO specs whose latency targets to judge against."
    ),
    kubernetes: str = typer.Option(
        "auto", "--kubernetes", help="auto: read the Deployment's flags if credentials exist; off."
    ),
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="Kubeconfig file to read."),
    as_json: bool = typer.Option(False, "--json", help='Print {"recommendations": [...]}.'),
) -> None:
    """Recommend HPA settings and engine flags, with evidence and patches."""
    if (upstream is None) == (prometheus is None):
        raise _fail("advise", "give --upstream URL (sample an engine) or --prometheus URL")
    if kubernetes not in ("auto", "off"):
        raise _fail("advise", f"--kubernetes {kubernetes!r}: auto or off")
    try:
        from inferwatch.slo import advise_cli
    except ImportError as exc:
        raise _fail(
            "advise", f"needs the slo extra ({exc.name} is missing): pip install 'inferwatch[slo]'"
        ) from None
    try:
        if upstream is not None:
            items = advise_cli.from_upstream(
                upstream,
                window=_seconds("--window", window or "60s"),
                interval=_seconds("--interval", interval),
                engine=engine,
                model=model,
                dcgm=dcgm,
                namespace=namespace,
                deployment=deployment,
                config=config,
                kubernetes=kubernetes,
                kubeconfig=kubeconfig,
                progress=not as_json and sys.stderr.isatty(),
            )
        else:
            from inferwatch.slo.service import DEFAULT_WINDOW

            items = advise_cli.from_prometheus(
                prometheus,
                namespace=namespace,
                deployment=deployment,
                window=window or DEFAULT_WINDOW,
                config_paths=config,
                kubernetes=kubernetes,
                kubeconfig=kubeconfig,
            )
    except advise_cli.AdviseError as exc:
        raise _fail("advise", str(exc)) from None
    sys.stdout.write(advise_cli.render(items, as_json))


def register(app: typer.Typer) -> None:
    from inferwatch.slo.compare_command import compare

    app.command("plan")(plan)
    app.add_typer(slo_app, name="slo")
    app.command("advise")(advise)
    app.command("compare")(compare)
