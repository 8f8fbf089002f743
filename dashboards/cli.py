"""`inferwatch dashboards build` and `inferwatch dashboards preview`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="dashboards",
    help="Grafana dashboards over the normalized schema.",
    no_args_is_help=True,
)


def _fail(command: str, message: str) -> typer.Exit:
    typer.echo(f"inferwatch dashboards {command}: {message}", err=True)
    return typer.Exit(2)


@app.command("build")
def build_command(
    out: Path = typer.Option(
        Path("dashboards/generated"),
        "--out",
        help="Directory for the JSON, the ConfigMaps and the provisioning file.",
    ),
) -> None:
    """Write the dashboards as JSON, as ConfigMaps, and a Grafana provisioning file."""
    try:
        from inferwatch.dashboards import build, lint
    except ImportError as exc:
        raise _fail(
            "build", f"needs the dashboards extra (pip install 'inferwatch[dashboards]'): {exc}"
        ) from None

    try:
        written = build.write(out)
    except lint.DashboardError as exc:
        raise _fail("build", str(exc)) from None
    except OSError as exc:
        raise _fail("build", f"cannot write under {out}: {exc.strerror or exc}") from None
    for path in written:
        typer.echo(str(path))


@app.command("preview")
def preview_command(
    prometheus: str = typer.Option(..., "--prometheus", help="Prometheus base URL."),
    out: Path = typer.Option(..., "--out", help="Directory for one PNG per dashboard."),
    range_: str = typer.Option("30m", "--range", help="Time range drawn, ending now (e.g. 1h)."),
) -> None:
    """Draw every dashboard to PNG from a live Prometheus (no Grafana needed)."""
    try:
        from inferwatch.dashboards import preview
    except ImportError as exc:
        raise _fail(
            "preview", f"needs the preview extra (pip install 'inferwatch[preview]'): {exc}"
        ) from None
    try:
        seconds = preview.parse_duration(range_)
    except ValueError:
        raise _fail("preview", f"--range {range_!r}: expected a duration like 30m or 2h") from None
    try:
        written = preview.render_previews(prometheus, out, range_seconds=seconds)
    except preview.PreviewError as exc:
        raise _fail("preview", str(exc)) from None
    except OSError as exc:
        raise _fail("preview", f"cannot write under {out}: {exc.strerror or exc}") from None
    for path in written:
        typer.echo(str(path))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dashboards")
