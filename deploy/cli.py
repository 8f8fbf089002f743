"""`inferwatch deploy render`, `inferwatch inject` and `inferwatch webhook serve`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

deploy_app = typer.Typer(help="Reference deployments for every framework.", no_args_is_help=True)
webhook_app = typer.Typer(help="The sidecar-injecting admission webhook.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"inferwatch: {message}", err=True)
    return typer.Exit(code)


@deploy_app.command("render")
def render(
    framework: str = typer.Option(
        ...,
        "--framework",
        "-f",
        help="vllm, tgi, trtllm, triton, llamacpp, ollama, sglang, or all.",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Write the kustomize tree (the framework's "
        "base and overlays, and the shared parts) under this directory. "
        "Without it, print the base as one YAML stream.",
    ),
) -> None:
    """Render a framework's deployment (engine + sidecar, Service, PodMonitor, PDB, HPA)."""
    from inferwatch.deploy import render as r
    from inferwatch.deploy import yamlio
    from inferwatch.deploy.frameworks import FRAMEWORKS

    names = list(FRAMEWORKS) if framework == "all" else [framework]
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown:
        raise _fail(f"--framework {framework!r}: known are {', '.join(FRAMEWORKS)}, or all")
    if out is None:
        docs = [d for n in names for d in r.base_documents(FRAMEWORKS[n])]
        sys.stdout.write(r.HEADER + yamlio.dump_all(docs))
        return
    try:
        written = r.render_tree(out, names)
    except OSError as exc:
        raise _fail(f"cannot write under {out}: {exc.strerror or exc}") from None
    typer.echo(f"inferwatch: wrote {len(written)} files under {out}", err=True)
    if not r.consumed_sources():
        typer.echo(
            "inferwatch: note: no generated rules or dashboards found (alerts/generated, "
            "dashboards/generated); monitoring/ holds only the PodMonitor",
            err=True,
        )


def inject(
    file: str = typer.Option(..., "--filename", "-f", help="A YAML file, or - for standard input."),
    engine: str = typer.Option(None, "--engine", help="The engine, instead of detecting it."),
    container: str = typer.Option(
        None, "--container", help="The container that runs the engine, when several could."
    ),
    dcgm: str = typer.Option(
        None,
        "--dcgm",
        help="dcgm-exporter URL for pods with GPUs "
        "(default: the node-local Service of deploy/gpu/).",
    ),
    no_dcgm: bool = typer.Option(False, "--no-dcgm", help="Never read GPU stats."),
    image: str = typer.Option(None, "--image", help="The sidecar image (default: this version's)."),
) -> None:
    """Add the inferwatch sidecar to the workloads in a manifest; the rest passes through as is."""
    from inferwatch.deploy import engines, injector, sidecar, yamlio

    if engine is not None:
        try:
            engines.get(engine)
        except ValueError as exc:
            raise _fail(f"--engine: {exc}") from None
    opts = injector.Options(
        engine=engine,
        container=container,
        dcgm=None if no_dcgm else (dcgm or sidecar.DCGM_URL),
        image=image or sidecar.IMAGE,
    )
    source = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        docs = yamlio.load_all(text, source)
    except yamlio.YAMLInputError as exc:
        raise _fail(str(exc)) from None
    errors, injected, already = [], 0, 0
    for index, doc in enumerate(docs, 1):
        try:
            result = injector.inject_document(doc, opts, index=index)
        except injector.InjectError as exc:
            errors.append(f"{source}: {exc}")
            continue
        injected += result.injected
        already += result.already
        for note in result.notes:
            typer.echo(f"inferwatch: {source}: {note}", err=True)
    if errors:
        for error in errors:
            typer.echo(f"inferwatch: {error}", err=True)
        raise typer.Exit(1)
    if injected == 0 and already == 0:
        raise _fail(
            f"{source}: no workload with a pod template (Deployment, StatefulSet, "
            f"DaemonSet, Job, CronJob, Pod, InferenceService) to inject",
            1,
        )
    sys.stdout.write(yamlio.dump_all(docs))
    typer.echo(f"inferwatch: {source}: injected {injected}, already injected {already}", err=True)


@webhook_app.command("serve")
def webhook_serve(
    tls_cert: Path = typer.Option(..., "--tls-cert", help="PEM certificate (chain)."),
    tls_key: Path = typer.Option(..., "--tls-key", help="PEM private key."),
    listen: str = typer.Option("0.0.0.0:8443", "--listen", help="HOST:PORT to serve on."),
    dcgm: str = typer.Option(None, "--dcgm", help="dcgm-exporter URL for pods with GPUs."),
    image: str = typer.Option(None, "--image", help="The sidecar image to inject."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve POST /mutate (AdmissionReview v1) over HTTPS, adding the sidecar to opted-in pods."""
    import asyncio
    import ssl

    from inferwatch.deploy import injector, sidecar, webhook
    from inferwatch.exporters import logs

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:8443")
    try:
        certs = webhook.Certificates(str(tls_cert), str(tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise _fail(f"cannot load --tls-cert {tls_cert} / --tls-key {tls_key}: {exc}") from None
    logs.setup(log_level)
    opts = injector.Options(dcgm=dcgm or sidecar.DCGM_URL, image=image or sidecar.IMAGE)
    try:
        asyncio.run(
            webhook.serve(webhook.build_app(opts), host.strip("[]") or "0.0.0.0", int(port), certs)
        )
    except OSError as exc:
        raise _fail(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
    app.command("inject")(inject)
    app.add_typer(webhook_app, name="webhook")
