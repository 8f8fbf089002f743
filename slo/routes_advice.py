"""`GET /v1/recommendations` (from Prometheus) and `POST /v1/advice` (from a snapshot)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from inferwatch.slo.deps import DEPLOYMENT_PATTERN, NAMESPACE_PATTERN, Authorized, Service
from inferwatch.slo.models import Advice
from inferwatch.slo.snapshot import Snapshot, advise_snapshot

router = APIRouter(prefix="/v1", tags=["advice"], dependencies=[Authorized])


class Recommendations(BaseModel):
    window: str
    deployments: list[Advice]


@router.get(
    "/recommendations",
    response_model=Recommendations,
    responses={
        401: {"description": "A token is set and the request does not carry it."},
        404: {"description": "No series of that namespace or deployment in the window."},
        503: {"description": "Prometheus is down or too slow."},
    },
)
def recommendations(
    service: Service,
    namespace: Annotated[str | None, Query(pattern=NAMESPACE_PATTERN, max_length=63)] = None,
    deployment: Annotated[str | None, Query(pattern=DEPLOYMENT_PATTERN, max_length=253)] = None,
) -> Recommendations:
    """Advice for every deployment in scope seen within the window: its status, what to change
    (HPA bounds and target, engine flags), the evidence and a patch for each."""
    return Recommendations(
        window=service.config.window, deployments=service.advice(namespace, deployment)
    )


@router.post("/advice", response_model=Advice)
def advice(snapshot: Snapshot, service: Service) -> Advice:
    """Advice from figures the caller measured (no Prometheus needed): counter increases,
    bucket increases and gauge samples over one window, and the engine's flags."""
    return advise_snapshot(snapshot, service)
