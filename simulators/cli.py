"""`inferwatch simulate` (one simulator) and `inferwatch demo` (a local fleet)."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"inferwatch: {message}", err=True)
    return typer.Exit(code)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise _fail(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]") or "0.0.0.0", int(port)


def simulate(
    engine: str = typer.Option(
        ...,
        "--engine",
        help="vllm, tgi, sglang, trtllm (on Triton), triton, llamacpp, ollama, or dcgm.",
    ),
    listen: str = typer.Option("127.0.0.1:8000", "--listen", help="HOST:PORT to serve on."),
    profile: str = typer.Option(
        "normal",
        "--profile",
        help="Synthetic arrivals: idle, light, normal, overload, wave, "
        "or none (only requests sent to the server).",
    ),
    rate_scale: float = typer.Option(1.0, "--rate-scale", help="Multiply the profile's rates."),
    model: list[str] = typer.Option(
        None, "--model", help="Served model name; repeat it for Triton's several models."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the arrivals and workload."),
    data_parallel: int = typer.Option(
        1,
        "--data-parallel",
        help='Engine ranks: vLLM engine cores (`engine="0"`, "1", ...), SGLang `dp_rank`s.',
    ),
    max_num_seqs: int = typer.Option(None, "--max-num-seqs", help="Largest running batch."),
    kv_cache_tokens: int = typer.Option(None, "--kv-cache-tokens", help="KV-cache capacity."),
    max_model_len: int = typer.Option(None, "--max-model-len", help="Context length."),
    gpus: int = typer.Option(1, "--gpus", help="dcgm: GPUs on the simulated node."),
    gpu_model: str = typer.Option(
        "l4", "--gpu-model", help="dcgm: l4, a10g, a100-80g, h100-80g, rtx-4000-ada."
    ),
    pod: str = typer.Option("", "--pod", help="dcgm: the pod the GPUs are mapped to."),
    namespace: str = typer.Option("", "--namespace", help="dcgm: that pod's namespace."),
) -> None:
    """Run one simulator: an engine's API and /metrics, or dcgm-exporter's /metrics."""
    import asyncio
    import dataclasses

    from inferwatch.simulators import catalog, dcgm, server
    from inferwatch.simulators import model as sim_model

    host, port = _listen(listen)
    if rate_scale < 0:
        raise _fail("--rate-scale must be >= 0")
    if data_parallel < 1 or gpus < 1:
        raise _fail("--data-parallel and --gpus must be at least 1")
    try:
        load = None if profile == "none" else sim_model.profile(profile).scaled(rate_scale)
        if engine == "dcgm":
            spec = dcgm.gpu_spec(gpu_model)
            app = _dcgm_app(spec, gpus, pod, namespace, load, seed)
            what = f"dcgm-exporter ({gpus} x {spec.model_name})"
        else:
            kind = catalog.engine_kind(engine)
            overrides = {
                k: v
                for k, v in (
                    ("max_num_seqs", max_num_seqs),
                    ("kv_cache_tokens", kv_cache_tokens),
                    ("max_model_len", max_model_len),
                )
                if v is not None
            }
            config = dataclasses.replace(kind.config, **overrides)
            es = catalog.build(
                engine,
                models=tuple(model) if model else None,
                load=load,
                config=config,
                ranks=data_parallel,
                seed=seed,
            )
            app = server.EngineServer(es).app()
            what = f"{kind.title} serving {', '.join(es.models)}"
            if kind.needs_proxy:
                what += " (no /metrics: put `inferwatch exporter --proxy` in front of it)"
    except ValueError as exc:
        raise _fail(str(exc)) from None

    def ready(bound: int) -> None:
        typer.echo(
            f"inferwatch simulate: {what} on http://{host}:{bound} (arrivals: {profile})", err=True
        )

    try:
        asyncio.run(server.serve(app, host, port, ready))
    except OSError as exc:
        raise _fail(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def _dcgm_app(spec, count: int, pod: str, namespace: str, load, seed: int):
    """A node of GPUs, each carrying its own simulated vLLM engine's load."""
    from inferwatch.simulators import catalog, dcgm, model, server

    gpus = dcgm.make_gpus(count, spec, "sim-node-0", seed)
    clocks = []
    for gpu in gpus:
        es = catalog.build("vllm", load=load, seed=seed + gpu.index)
        gpu.engine = es.sim.engines[0]
        gpu.pod, gpu.namespace, gpu.container = pod, namespace, "vllm" if pod else ""
        clocks.append(model.Realtime(es.sim))
    loop_time = clocks[0]
    writer = dcgm.DcgmWriter(gpus, loop_time.now)
    return server.DcgmServer(writer, clocks).app()


def demo(
    duration: float = typer.Option(
        None,
        "--duration",
        help="Run this many seconds once everything has started, finish the reports still "
        "due, then stop and exit 0.",
    ),
    no_prometheus: bool = typer.Option(
        False, "--no-prometheus", help="Do not start Prometheus even if installed."
    ),
    base_port: int = typer.Option(
        0, "--base-port", help="First of the consecutive ports to use (0: any free)."
    ),
    summary_every: float = typer.Option(
        5.0, "--summary-every", help="Seconds between live summary lines."
    ),
    real_vllm: bool = typer.Option(
        False,
        "--real-vllm",
        help="A real vLLM (CPU build, tiny model) under a load in waves instead of the "
        "simulators; installed into $INFERWATCH_CACHE or ~/.cache/inferwatch on first use.",
    ),
    warmup: float = typer.Option(
        90.0,
        "--warmup",
        help="Seconds before the advice, the SLOs' state and the dashboard previews "
        "(sooner when --duration is shorter).",
    ),
    out: Path = typer.Option(
        Path("inferwatch-demo"),
        "--out",
        help="Folder for what the demo writes to keep: SLO specs, rules, advice, previews.",
    ),
) -> None:
    """A local fleet: a simulated deployment of every engine, DCGM, a sidecar each, Prometheus
    with the generated rules, the SLO service; after a warm-up, advice and dashboard previews."""
    import asyncio

    from inferwatch.simulators import demo as demo_module

    if duration is not None and duration <= 0:
        raise _fail("--duration must be positive")
    if warmup <= 0:
        raise _fail("--warmup must be positive")
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out}: not a folder")
    if not 0 <= base_port < 65500:
        raise _fail("--base-port must be 0 or a port below 65500")
    if summary_every <= 0:
        raise _fail("--summary-every must be positive")
    options = demo_module.Options(
        duration=duration,
        prometheus=not no_prometheus,
        base_port=base_port,
        summary_every=summary_every,
        real_vllm=real_vllm,
        warmup=warmup,
        out=out,
    )
    code = asyncio.run(demo_module.run(options))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("demo")(demo)
