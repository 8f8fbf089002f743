"""Probes and the service's own metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferwatch.slo.deps import Authorized, Service
from inferwatch.slo.prom import Deadline, PrometheusUnavailable

router = APIRouter(tags=["operations"])
READY_TIMEOUT = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Prometheus does not answer."}})
def readyz(service: Service) -> JSONResponse:
    """Ready when Prometheus answers a query."""
    try:
        service.prometheus.ready(Deadline(min(READY_TIMEOUT, service.config.timeout)))
    except PrometheusUnavailable as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready", "prometheus": service.prometheus.url})


@router.get("/metrics", dependencies=[Authorized], response_class=Response)
def metrics(request: Request) -> Response:
    """The service's own metrics, in the Prometheus text format."""
    registry = request.app.state.telemetry.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
