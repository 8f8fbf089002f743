"""`GET /v1/slos` and `GET /v1/slos/{name}`: SLIs, error budgets, burn rates, alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from inferwatch.slo.deps import NAMESPACE_PATTERN, Authorized, Service
from inferwatch.slo.models import SLOStatus

router = APIRouter(prefix="/v1/slos", tags=["slos"], dependencies=[Authorized])

ERRORS = {
    401: {"description": "A token is set and the request does not carry it."},
    404: {"description": "No SLO of that name."},
    503: {"description": "Prometheus is down or too slow."},
}


@router.get("", response_model=list[SLOStatus], responses=ERRORS)
def list_slos(service: Service) -> list[SLOStatus]:
    """Every SLO of the loaded specs, in their order."""
    return service.statuses()


@router.get("/{name}", response_model=SLOStatus, responses=ERRORS)
def get_slo(
    service: Service,
    name: Annotated[str, Path(pattern=NAMESPACE_PATTERN, max_length=63)],
) -> SLOStatus:
    """One SLO: SLI and error budget over its period, burn rate over each alert window, and
    which multiwindow burn-rate alerts would fire now."""
    return service.status(name)
