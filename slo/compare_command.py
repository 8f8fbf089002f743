"""The `inferwatch compare` command's options (typer only: `inferwatch --help` stays light; the
work is in `compare_cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _fail(message: str) -> typer.Exit:
    """One line on stderr and exit code 2: bad input never ends in a traceback."""
    typer.echo(f"inferwatch compare: {message}", err=True)
    return typer.Exit(2)


def compare(
    prometheus: str = typer.Option(
        None, "--prometheus", help="Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL."
    ),
    baseline: str = typer.Option(
        None, "--baseline", help="The deployment serving now: NAMESPACE/DEPLOYMENT."
    ),
    candidate: str = typer.Option(
        None, "--candidate", help="The deployment under test: NAMESPACE/DEPLOYMENT."
    ),
    window: str = typer.Option("1h", "--window", help="How far back to compare (1m to 31d)."),
    thresholds: Path = typer.Option(
        None, "--thresholds", help="A YAML or JSON file of thresholds (docs/compare.md)."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override one threshold: NAME=VALUE (repeatable)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"verdict": ..., "slis": {...}, ...} instead of a table.'
    ),
) -> None:
    """Compare a candidate deployment with its baseline on the LLM SLIs: promote, hold or
    rollback, with evidence. Exit code 0 promote, 1 rollback, 3 hold, 2 error."""
    for flag, value in (
        ("--prometheus URL", prometheus),
        ("--baseline NAMESPACE/DEPLOYMENT", baseline),
        ("--candidate NAMESPACE/DEPLOYMENT", candidate),
    ):
        if not value:
            raise _fail(f"give {flag}")
    try:
        from inferwatch.slo import compare_cli
        from inferwatch.slo.compare_models import CompareInputError
        from inferwatch.slo.prom import PrometheusUnavailable, QueryRefused
        from inferwatch.slo.service import NotFound
    except ImportError as exc:
        raise _fail(
            f"needs the slo extra ({exc.name} is missing): pip install 'inferwatch[slo]'"
        ) from None
    try:
        limits = compare_cli.load_thresholds(thresholds, sets)
        result = compare_cli.run(prometheus, baseline, candidate, window, limits)
    except (CompareInputError, NotFound, PrometheusUnavailable, QueryRefused) as exc:
        raise _fail(str(exc).replace("\n", " ")) from None
    sys.stdout.write(compare_cli.render(result, as_json))
    raise typer.Exit(compare_cli.exit_code(result))
