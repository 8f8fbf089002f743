"""`inferwatch advise`: the advisor from the command line, from Prometheus or straight from an
engine's `/metrics` (the embedded default for one engine and no monitoring stack)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from inferwatch.alerts import promql
from inferwatch.slo import report
from inferwatch.slo.models import Advice

# The command line waits longer for Prometheus than the API (a large fleet's batch).
TIMEOUT = 30.0


class AdviseError(RuntimeError):
    """Why advice could not be given, in one line."""


def _specs(config: Sequence[Path]) -> tuple:
    from inferwatch.slo import spec as slo_spec

    if not config:
        return ()
    try:
        return slo_spec.load_all(config)
    except slo_spec.SpecError as exc:
        raise AdviseError(f"refusing the SLO specs:\n{exc}") from None


def _reader(kubernetes: str, kubeconfig: str | None) -> tuple[object | None, str]:
    from inferwatch.slo.kube import DeploymentReader, KubeUnavailable, api_client

    if kubernetes == "off":
        return None, "Reading the Deployment is off (--kubernetes off)."
    try:
        return DeploymentReader(api_client(kubeconfig)), ""
    except KubeUnavailable as exc:
        return None, f"The Deployment was not read ({exc})."


def _validate(namespace: str | None, deployment: str | None) -> None:
    try:
        if namespace is not None:
            promql.validate_namespace(namespace)
        if deployment is not None:
            promql.validate_deployment(deployment)
    except promql.UnsafeName as exc:
        raise AdviseError(str(exc)) from None


def from_prometheus(
    url: str,
    *,
    namespace: str | None,
    deployment: str | None,
    window: str,
    config_paths: Sequence[Path],
    kubernetes: str,
    kubeconfig: str | None,
) -> list[Advice]:
    from inferwatch.slo.prom import Prometheus, PrometheusUnavailable, QueryRefused
    from inferwatch.slo.service import NotFound, ServiceConfig, SLOService

    _validate(namespace, deployment)
    try:
        promql.validate_duration(window)
        if promql.seconds(window) < 60:
            raise ValueError
    except ValueError:
        raise AdviseError(f"--window {window!r}: a duration of at least 1m, e.g. 6h") from None
    try:
        prom = Prometheus(url, timeout=TIMEOUT)
    except ValueError as exc:
        raise AdviseError(str(exc)) from None
    reader, note = _reader(kubernetes, kubeconfig)
    config = ServiceConfig(window=window, timeout=TIMEOUT)
    service = SLOService(_specs(config_paths), prom, config, reader, note)  # type: ignore[arg-type]
    try:
        return service.advice(namespace, deployment)
    except (PrometheusUnavailable, QueryRefused, NotFound) as exc:
        raise AdviseError(str(exc)) from None
    finally:
        prom.close()


def from_upstream(
    upstream: str,
    *,
    window: float,
    interval: float,
    engine: str,
    model: str | None,
    dcgm: str | None,
    namespace: str | None,
    deployment: str | None,
    config: Sequence[Path],
    kubernetes: str,
    kubeconfig: str | None,
    progress: bool,
) -> list[Advice]:
    from inferwatch.exporters import registry
    from inferwatch.slo import from_upstream as sampling
    from inferwatch.slo.advisor import advise
    from inferwatch.slo.kube import KubeUnavailable
    from inferwatch.slo.objectives import headline, objectives_for
    from inferwatch.slo.queries import HISTOGRAMS
    from inferwatch.slo.rule_inputs import Inputs

    _validate(namespace, deployment)
    # The sidecar's code logs upstream transitions; the report says what matters instead.
    logging.getLogger("inferwatch.exporter").setLevel(logging.ERROR)
    if interval > window:
        raise AdviseError(f"--interval ({interval:g}s) is longer than --window ({window:g}s)")
    if engine != "auto":
        try:
            registry.get(engine)
        except registry.DetectionError as exc:
            raise AdviseError(str(exc)) from None
    specs = _specs(config)
    latency, availability = objectives_for(namespace, deployment, specs)

    def tick(done: int, total: int) -> None:
        if progress:
            sys.stderr.write(f"\rsampling {upstream}: {done}/{total} pages")
            sys.stderr.flush()

    try:
        pages, engine_name, found_model, notes = sampling.sample_pages(
            upstream, window, interval, dcgm=dcgm, engine=engine, model=model, on_page=tick
        )
    except sampling.UpstreamError as exc:
        raise AdviseError(str(exc)) from None
    finally:
        if progress:
            sys.stderr.write("\n")
    from inferwatch.exporters.sources import metrics_url

    figures = sampling.reduce(
        pages,
        engine_name,
        found_model,
        metrics_url(upstream)[1],
        headline(latency, list(HISTOGRAMS)),
        namespace,
        deployment,
        notes,
    )
    spec, note = None, ""
    if namespace and deployment:
        reader, note = _reader(kubernetes, kubeconfig)
        if reader is not None:
            try:
                spec = reader.read(namespace, deployment)  # type: ignore[attr-defined]
                if spec is None:
                    note = f"Deployment {namespace}/{deployment} does not exist."
            except KubeUnavailable as exc:
                note = f"The Deployment was not read ({exc})."
    elif namespace or deployment:
        note = "Give both --namespace and --deployment to read the Deployment's flags."
    return [
        advise(
            Inputs(
                figures=figures,
                latency=latency,
                availability=availability,
                deployment=spec,
                deployment_note=note,
            )
        )
    ]


def render(items: list[Advice], as_json: bool) -> str:
    return report.as_json(items) if as_json else report.report(items)
