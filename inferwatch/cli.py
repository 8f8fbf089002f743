"""The `inferwatch` console script.

`inferwatch exporter` is the sidecar in every inference pod: it starts on argparse and the
standard library alone, without typer (and the pydantic typer loads to coerce arguments), so
it stays small. Every other command goes through the typer app in `inferwatch.commands`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["exporter"]:
        from inferwatch.exporters.run import run_exporter

        sys.exit(run_exporter(args[1:]))
    from inferwatch.commands import app

    app(args=args, prog_name="inferwatch")


def __getattr__(name: str):
    if name == "app":  # `from inferwatch.cli import app`, without loading typer eagerly
        from inferwatch.commands import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
