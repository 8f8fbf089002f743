"""`inferwatch exporter` and `inferwatch normalize`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"inferwatch: {message}", err=True)
    return typer.Exit(code)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"--listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:9450")
    return host.strip("[]") or "0.0.0.0", int(port)


def exporter(
    upstream: str = typer.Option(None, "--upstream", help="The engine's base URL or /metrics URL."),
    engine: str = typer.Option(
        "auto", "--engine", help="auto (detect from the page), or an engine."
    ),
    dcgm: str = typer.Option(None, "--dcgm", help="dcgm-exporter's URL, for this pod's GPUs."),
    model: str = typer.Option(None, "--model", help="Model name, for engines that do not say."),
    listen: str = typer.Option("0.0.0.0:9450", "--listen", help="HOST:PORT to serve on."),
    timeout: float = typer.Option(
        5.0,
        "--timeout",
        help="Upstream fetch timeout (seconds); "
        "lowered to Prometheus' scrape timeout when it is shorter.",
    ),
    max_body_bytes: int = typer.Option(
        16 * 1024 * 1024, "--max-body-bytes", help="Refuse upstream pages larger than this."
    ),
    passthrough: bool = typer.Option(
        False, "--passthrough", help="Also serve the engine's own metrics, unchanged."
    ),
    proxy: bool = typer.Option(
        False,
        "--proxy",
        help="Forward every request but /metrics, /healthz and /readyz to --upstream, "
        "measuring generations (Ollama, or any OpenAI-compatible server with --engine).",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve the normalized metrics of an engine (and this pod's GPUs) for Prometheus."""
    import asyncio

    from inferwatch.exporters import logs, registry
    from inferwatch.exporters.identity import context_from_env
    from inferwatch.exporters.server import Exporter, Settings, build_app, serve

    if not upstream and not dcgm:
        raise _fail("give --upstream (the engine) and/or --dcgm")
    if proxy and not upstream:
        raise _fail("--proxy needs --upstream: the server to forward requests to")
    if engine != "auto":
        try:
            registry.get(engine)
        except registry.DetectionError as exc:
            raise _fail(str(exc)) from None
    if timeout <= 0 or max_body_bytes <= 0:
        raise _fail("--timeout and --max-body-bytes must be positive")
    host, port = _listen(listen)
    logs.setup(log_level)
    settings = Settings(
        upstream=upstream,
        engine=engine,
        dcgm=dcgm,
        model=model,
        listen_host=host,
        listen_port=port,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        passthrough=passthrough,
        proxy=proxy,
    )
    exp = Exporter(settings, context_from_env(model=model))
    try:
        asyncio.run(serve(build_app(exp), host, port, settings.drain_seconds))
    except OSError as exc:
        raise _fail(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def normalize(
    file: str = typer.Argument(..., help="An exposition file, or - for standard input."),
    engine: str = typer.Option(
        "auto", "--engine", help="auto (detect from the page), or an engine."
    ),
    dcgm: Path = typer.Option(None, "--dcgm", help="A dcgm-exporter exposition file."),
    model: str = typer.Option(None, "--model", help="Model name, for engines that do not say."),
) -> None:
    """Normalize one scrape: an engine's exposition in, the normalized exposition out."""
    from inferwatch.exporters import registry
    from inferwatch.exporters.identity import context_from_env
    from inferwatch.exporters.normalize import Context, Normalizer, engine_info, render

    text = _read(file)
    ctx = context_from_env(model=model)
    try:
        adapter = registry.detect(text) if engine == "auto" else registry.get(engine)
    except registry.DetectionError as exc:
        raise _fail(f"{file}: {exc}") from None
    results = []
    result = Normalizer(adapter, ctx).normalize(text)
    engine_info(result, adapter, ctx)
    results.append(result)
    skipped = {file: result.errors}
    page_gpu = registry.PAGE_GPU_ADAPTERS.get(adapter.name)
    if dcgm is None and page_gpu is not None:
        # Triton's page carries its GPUs' figures: the GPU source when there is no DCGM.
        local = Context(model=ctx.model)
        results.append(Normalizer(page_gpu, local).normalize(text))
    if dcgm is not None:
        gpu = Normalizer(registry.get("dcgm"), ctx).normalize(_read(str(dcgm)))
        results.append(gpu)
        skipped[str(dcgm)] = gpu.errors
    sys.stdout.write(render(results, ctx))
    for name, count in skipped.items():
        if count:
            typer.echo(
                f"inferwatch: {name}: skipped {count} line(s) that could not be parsed", err=True
            )


def metrics_table(
    out: Path = typer.Option(None, "--out", help="Write here instead of standard output."),
) -> None:
    """Write the schema and per-engine mapping table (docs/metrics.md)."""
    from inferwatch.exporters import metrics_doc

    text = metrics_doc.render()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        return Path(file).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    app.command("exporter")(exporter)
    app.command("normalize")(normalize)
    app.command("metrics-table")(metrics_table)
