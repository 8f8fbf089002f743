"""`POST /v1/plan`: the capacity planner (`inferwatch plan`) over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from inferwatch.slo.deps import Authorized
from inferwatch.slo.planner import Plan, PlannerError, PlanRequest, plan_request

router = APIRouter(prefix="/v1", tags=["plan"], dependencies=[Authorized])


@router.post(
    "/plan",
    response_model=Plan,
    responses={422: {"description": "The request cannot be planned; the detail says why."}},
)
def plan(request: PlanRequest) -> Plan:
    """Weights, KV cache per token, which GPU, how many, tensor parallelism and the flags."""
    try:
        return plan_request(request)
    except PlannerError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except OverflowError:
        # e.g. `params: 1e307`: the arithmetic leaves the float range.
        raise HTTPException(
            status_code=422, detail="the request's numbers are out of range"
        ) from None
