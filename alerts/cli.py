"""`inferwatch alerts build`: recording rules, alerts and SLO rules as files."""

from __future__ import annotations

from pathlib import Path

import typer

alerts_app = typer.Typer(
    name="alerts",
    help="Prometheus recording rules, alerts and SLO burn-rate rules.",
    no_args_is_help=True,
)


@alerts_app.command("build")
def build(
    out: Path = typer.Option(
        None, "--out", help="Directory to write to (default: the package's alerts/generated)."
    ),
    slo: list[Path] = typer.Option(
        None, "--slo", help="SLO spec file or directory (repeatable; default: slo/examples)."
    ),
    config: Path = typer.Option(
        None, "--config", help="YAML file overriding alert thresholds and selectors."
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if the files in --out are not up to date."
    ),
) -> None:
    """Write plain Prometheus rule files and PrometheusRule objects."""
    from inferwatch.alerts import build as builder
    from inferwatch.alerts import config as alert_config
    from inferwatch.alerts.promql import UnsafeName
    from inferwatch.alerts.slo_rules import UnreachableAlert
    from inferwatch.slo import spec as slo_spec

    out = out or builder.GENERATED
    try:
        settings = alert_config.load(config) if config else alert_config.AlertConfig()
        specs = slo_spec.load_all(slo) if slo else None
        files = builder.render(settings, specs)
    except (slo_spec.SpecError, UnreachableAlert, UnsafeName, ValueError) as exc:
        typer.echo(f"inferwatch alerts build: {exc}", err=True)
        raise typer.Exit(2) from None
    if check:
        differ = builder.stale(files, out)
        if differ:
            typer.echo(f"out of date in {out}: {', '.join(differ)}", err=True)
            typer.echo("run `inferwatch alerts build` and commit the result", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out}: up to date ({len(files)} files)")
        return
    for path in builder.write(files, out):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app)
