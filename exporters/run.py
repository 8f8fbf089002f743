"""`inferwatch exporter`, the sidecar's entry point: argparse and the standard library only.

The sidecar runs in every inference pod, so it starts without typer (and the pydantic typer
loads to coerce arguments); `inferwatch.cli.main` sends `exporter` here directly.
"""

from __future__ import annotations

import argparse
import sys


def _listen(value: str) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]") or "0.0.0.0", int(port)


def exporter_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferwatch exporter",
        description="Serve the normalized metrics of an engine (and this pod's GPUs) for "
        "Prometheus.",
    )
    add = parser.add_argument
    add("--upstream", help="the engine's base URL or /metrics URL")
    add("--engine", default="auto", help="auto (detect from the page, default), or an engine")
    add("--dcgm", help="dcgm-exporter's URL, for this pod's GPUs")
    add("--model", help="model name, for engines that do not say")
    add("--listen", default="0.0.0.0:9450", help="HOST:PORT to serve on (default 0.0.0.0:9450)")
    add(
        "--timeout",
        type=float,
        default=5.0,
        help="upstream fetch timeout in seconds, lowered to Prometheus' scrape timeout when "
        "that is shorter (default 5)",
    )
    add(
        "--max-body-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="refuse upstream pages larger than this; bounds the sidecar's memory (default 8 MiB)",
    )
    add("--passthrough", action="store_true", help="also serve the engine's own metrics, unchanged")
    add(
        "--proxy",
        action="store_true",
        help="forward every request but /metrics, /healthz and /readyz to --upstream, "
        "measuring generations (Ollama, or any OpenAI-compatible server with --engine)",
    )
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def run_exporter(argv: list[str]) -> int:
    """`inferwatch exporter`: argparse and the standard library only (see inferwatch.cli)."""
    from inferwatch.exporters import logs, registry
    from inferwatch.exporters.identity import context_from_env
    from inferwatch.exporters.server import Exporter, Settings, serve

    args = exporter_parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"inferwatch: {message}", file=sys.stderr)  # noqa: T201
        return 2

    if not args.upstream and not args.dcgm:
        return fail("give --upstream (the engine) and/or --dcgm")
    if args.proxy and not args.upstream:
        return fail("--proxy needs --upstream: the server to forward requests to")
    if args.engine != "auto":
        try:
            registry.get(args.engine)
        except registry.DetectionError as exc:
            return fail(str(exc))
    if args.timeout <= 0 or args.max_body_bytes <= 0:
        return fail("--timeout and --max-body-bytes must be positive")
    listen = _listen(args.listen)
    if listen is None:
        return fail(f"--listen {args.listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9450")
    host, port = listen
    logs.setup(args.log_level)
    settings = Settings(
        upstream=args.upstream,
        engine=args.engine,
        dcgm=args.dcgm,
        model=args.model,
        listen_host=host,
        listen_port=port,
        timeout=args.timeout,
        max_body_bytes=args.max_body_bytes,
        passthrough=args.passthrough,
        proxy=args.proxy,
    )
    exp = Exporter(settings, context_from_env(model=args.model))
    try:
        if args.proxy:
            from inferwatch.exporters.measure import proxy_engine
            from inferwatch.exporters.proxy import Proxy, serve_proxy
            from inferwatch.exporters.sources import metrics_url

            base, _url = metrics_url(args.upstream)
            forward = Proxy(base, proxy_engine(args.engine))
            serve_proxy(exp, forward, host, port, settings.drain_seconds)
        else:
            serve(exp, host, port, settings.drain_seconds)
    except OSError as exc:
        return fail(f"cannot listen on {args.listen}: {exc.strerror or exc}")
    return 0
