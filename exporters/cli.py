"""`inferwatch exporter` and `inferwatch normalize`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"inferwatch: {message}", err=True)
    return typer.Exit(code)


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


def _exporter_command(ctx: typer.Context) -> None:
    # `inferwatch exporter` normally skips typer (inferwatch.cli); this is the same parser.
    from inferwatch.exporters.run import run_exporter

    raise typer.Exit(run_exporter(list(ctx.args)))


def register(app: typer.Typer) -> None:
    app.command(
        "exporter",
        help="Serve the normalized metrics of an engine (and this pod's GPUs) for Prometheus.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(_exporter_command)
    app.command("normalize")(normalize)
    app.command("metrics-table")(metrics_table)
