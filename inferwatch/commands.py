"""The `inferwatch` command tree (typer).

Each subpackage registers its own commands from its `cli` module, importing its heavy
dependencies inside the command functions: an install with only the exporter extra must still
show every command. The sidecar itself (`inferwatch exporter`) does not go through here: see
`inferwatch.cli`.
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

from inferwatch import __version__

app = typer.Typer(
    name="inferwatch",
    help="Observability and SLOs for LLM inference servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules with a `register(app)` function, in the order their commands are listed.
COMMAND_MODULES = (
    "inferwatch.exporters.cli",
    "inferwatch.dashboards.cli",
    "inferwatch.alerts.cli",
    "inferwatch.slo.cli",
    "inferwatch.deploy.cli",
    "inferwatch.simulators.cli",
    "inferwatch.load.cli",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inferwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Observability and SLOs for LLM inference servers."""


for _name in COMMAND_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)
