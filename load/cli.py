"""`inferwatch load`."""

from __future__ import annotations

import sys

import typer

from inferwatch.load.spec import (
    DEFAULT_DURATION,
    DEFAULT_MAX_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    DEFAULT_TIMEOUT,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"inferwatch load: {message}", err=True)
    return typer.Exit(code)


def load(
    target: str = typer.Option(
        ..., "--target", help="The server's URL, e.g. http://127.0.0.1:8000"
    ),
    concurrency: int = typer.Option(
        None, "--concurrency", "-c", help="Closed loop: requests in flight at once (default 1)."
    ),
    rate: float = typer.Option(
        None, "--rate", "-r", help="Open loop: Poisson arrivals, in requests per second."
    ),
    duration: str = typer.Option(
        None,
        "--duration",
        "-d",
        help="Stop starting requests after this long (30s, 2m). "
        f"Default {DEFAULT_DURATION:g}s unless --requests is given.",
    ),
    requests: int = typer.Option(None, "--requests", "-n", help="Stop after this many requests."),
    prompt_tokens: int = typer.Option(
        DEFAULT_PROMPT_TOKENS, "--prompt-tokens", help="About this many tokens in each prompt."
    ),
    max_tokens: int = typer.Option(
        DEFAULT_MAX_TOKENS, "--max-tokens", help="Tokens to generate per request."
    ),
    stream: bool = typer.Option(False, "--stream", help="Stream responses (measures TTFT, ITL)."),
    chat: bool = typer.Option(False, "--chat", help="Use /v1/chat/completions."),
    model: str = typer.Option(None, "--model", help="Model name (default: the first listed)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed for prompts and arrival times."),
    ignore_eos: bool = typer.Option(
        True,
        "--ignore-eos/--no-ignore-eos",
        help="Ask for exactly --max-tokens tokens (vLLM, SGLang); "
        "turn off for servers that refuse unknown fields.",
    ),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", help="Per-request timeout (s)."),
) -> None:
    """Send OpenAI-compatible load to a server and report client-side latencies and tokens."""
    from inferwatch.load.progress import Progress
    from inferwatch.load.runner import LoadError, run_load
    from inferwatch.load.spec import LoadSpec, LoadSpecError, parse_duration

    try:
        spec = LoadSpec(
            target=target,
            concurrency=concurrency,
            rate=rate,
            duration=None if duration is None else parse_duration(duration),
            requests=requests,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            stream=stream,
            chat=chat,
            model=model,
            seed=seed,
            ignore_eos=ignore_eos,
            timeout=timeout,
        )
    except LoadSpecError as exc:
        raise _fail(str(exc)) from None
    progress = Progress(spec.requests, spec.duration) if sys.stderr.isatty() else None
    try:
        report = run_load(spec, progress)
    except LoadError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    sys.stdout.write(report.to_json() if json_out else report.table())
    if report.requests and not report.requests_ok:
        raise _fail(f"none of the {report.requests} requests succeeded", 1)


def register(app: typer.Typer) -> None:
    app.command("load")(load)
