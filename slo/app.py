"""The SLO service: a FastAPI app over `SLOService`.

    GET  /v1/slos                   every SLO's SLI, error budget, burn rates, alerts
    GET  /v1/slos/{name}            one SLO
    GET  /v1/recommendations        advice per deployment (?namespace= &deployment=)
    POST /v1/advice                 advice from a snapshot of figures (no Prometheus)
    POST /v1/plan                   the capacity planner
    GET  /v1/compare                a canary comparison of two deployments (?baseline=NS/NAME
                                    &candidate=NS/NAME&window=1h): promote, hold or rollback
    GET  /healthz  /readyz          liveness; readiness = Prometheus answers
    GET  /metrics                   the service's own metrics
    GET  /                          the HTML page: SLOs, burn, recommendations and patches

Prometheus down or slow answers 503 within the settings' timeout, an unknown SLO or
deployment 404, a bad name 422; never a stack trace. With a token set
(`INFERWATCH_SLO_TOKEN`), everything but the probes needs `Authorization: Bearer <token>` (the
page also takes it once through a login form, kept in an HttpOnly cookie).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from inferwatch import __version__
from inferwatch.alerts.promql import UnsafeName
from inferwatch.slo import (
    routes_advice,
    routes_compare,
    routes_ops,
    routes_page,
    routes_plan,
    routes_slos,
)
from inferwatch.slo.prom import Prometheus, PrometheusUnavailable, QueryRefused
from inferwatch.slo.service import NotFound, ServiceConfig, SLOService
from inferwatch.slo.settings import Settings
from inferwatch.slo.telemetry import Telemetry

log = logging.getLogger("inferwatch.slo")


def build_service(settings: Settings) -> tuple[SLOService, str]:
    """The service the settings describe; SpecError for a bad spec file. The string says why
    Deployments will not be read, when they will not."""
    from inferwatch.slo import spec as slo_spec
    from inferwatch.slo.kube import DeploymentReader, KubeUnavailable, api_client

    specs = slo_spec.load_all(settings.config) if settings.config else ()
    headers = {}
    if settings.prometheus_bearer_token is not None:
        headers["Authorization"] = f"Bearer {settings.prometheus_bearer_token.get_secret_value()}"
    prom = Prometheus(settings.prometheus_url, timeout=settings.timeout, headers=headers)
    reader, note = None, ""
    if settings.kubernetes == "off":
        note = "Reading Deployments is off: flags the engine does not state are unknown."
    else:
        try:
            reader = DeploymentReader(api_client(settings.kubeconfig))
        except KubeUnavailable as exc:
            note = f"No Kubernetes access ({exc}): flags the engine does not state are unknown."
    config = ServiceConfig(
        window=settings.window,
        timeout=settings.timeout,
        keda_prometheus_url=settings.keda_prometheus_url,
        recording_rules=settings.recording_rules,
    )
    return SLOService(specs, prom, config, reader, note), note


def create_app(settings: Settings, service: SLOService | None = None) -> FastAPI:
    if service is None:
        service, _ = build_service(settings)
    telemetry = Telemetry()
    telemetry.slos.set(len(service.specs))
    service.prometheus.on_query = telemetry.on_query
    app = FastAPI(
        title="inferwatch SLO service",
        version=__version__,
        description=(
            "SLIs, error budgets and burn rates of LLM inference SLOs, and tuning advice "
            "(HPA, engine flags) with evidence and patches."
        ),
    )
    app.state.settings = settings
    app.state.service = service
    app.state.telemetry = telemetry
    app.include_router(routes_slos.router)
    app.include_router(routes_advice.router)
    app.include_router(routes_plan.router)
    app.include_router(routes_compare.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_page.router)
    _errors(app)

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        telemetry.requests.labels(template, str(response.status_code)).inc()
        telemetry.request_seconds.labels(template).observe(time.perf_counter() - started)
        return response

    return app


def _errors(app: FastAPI) -> None:
    def answer(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers or None)

    @app.exception_handler(PrometheusUnavailable)
    async def _unavailable(_: Request, exc: PrometheusUnavailable) -> JSONResponse:
        return answer(503, str(exc), **{"Retry-After": "10"})

    @app.exception_handler(QueryRefused)
    async def _refused(_: Request, exc: QueryRefused) -> JSONResponse:
        log.error("Prometheus refused a query: %s", exc)
        return answer(502, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return answer(404, str(exc))

    @app.exception_handler(UnsafeName)
    async def _unsafe(_: Request, exc: UnsafeName) -> JSONResponse:
        return answer(422, str(exc))
