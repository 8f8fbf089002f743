"""`GET /v1/compare`: a canary (or A/B) comparison of two deployments on the LLM SLIs."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from inferwatch.slo.compare_models import (
    DEFAULT_WINDOW,
    CompareInputError,
    Comparison,
    Thresholds,
    parse_ref,
)
from inferwatch.slo.compare_prometheus import compare_deployments
from inferwatch.slo.deps import Authorized, Service
from inferwatch.slo.prom import Deadline

router = APIRouter(prefix="/v1", tags=["compare"], dependencies=[Authorized])


class CompareQuery(Thresholds):
    """The two deployments, the window, and any threshold to override (unknown names are
    refused, so a misspelt threshold never goes unnoticed)."""

    baseline: str = Field(
        max_length=320, description="The deployment serving now: NAMESPACE/DEPLOYMENT."
    )
    candidate: str = Field(
        max_length=320, description="The deployment under test: NAMESPACE/DEPLOYMENT."
    )
    window: str = Field(
        DEFAULT_WINDOW, max_length=32, description="How far back to compare: 1m to 31d."
    )


@router.get(
    "/compare",
    response_model=Comparison,
    responses={
        401: {"description": "A token is set and the request does not carry it."},
        404: {"description": "A deployment has no data in the window (the message says which)."},
        422: {"description": "A malformed NAMESPACE/DEPLOYMENT, name, window or threshold."},
        503: {"description": "Prometheus is down or too slow."},
    },
)
def compare(service: Service, query: Annotated[CompareQuery, Query()]) -> Comparison:
    """Compare the candidate with the baseline over the window: for each SLI (TTFT, TPOT and
    e2e latency, error ratio, tokens/s per GPU, KV-cache usage, preemptions) both values, the
    difference, a one-sided test and its p-value, the threshold and pass/fail/insufficient,
    with the PromQL and values behind them; the verdict `promote`, `hold` (with how much more
    data it needs) or `rollback`."""
    try:
        baseline = parse_ref(query.baseline, "baseline")
        candidate = parse_ref(query.candidate, "candidate")
        thresholds = Thresholds(**query.model_dump(exclude={"baseline", "candidate", "window"}))
        return compare_deployments(
            service.prometheus,
            baseline,
            candidate,
            query.window,
            thresholds,
            Deadline(service.config.timeout),
            time.time(),
        )
    except CompareInputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
