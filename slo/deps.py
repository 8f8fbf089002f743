"""FastAPI dependencies: the service, and the optional bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inferwatch.alerts import promql
from inferwatch.slo.service import SLOService
from inferwatch.slo.settings import Settings

COOKIE = "inferwatch_slo_token"

# Kubernetes names as request parameters (the same rules as `promql.validate_*`; the Rust
# regex engine behind FastAPI's patterns has no look-ahead, so the length is a max_length).
NAMESPACE_PATTERN = promql.DNS_LABEL.pattern
DEPLOYMENT_PATTERN = promql.DNS_SUBDOMAIN.pattern.replace("(?=.{1,253}$)", "")
assert "(?" not in DEPLOYMENT_PATTERN
_bearer = HTTPBearer(auto_error=False, description="Required when INFERWATCH_SLO_TOKEN is set.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> SLOService:
    return request.app.state.service


def token_ok(settings: Settings, presented: str | None) -> bool:
    if settings.token is None:
        return True
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), settings.token.get_secret_value().encode())


def require_token(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the bearer token (or the page's cookie) matches, when a token is set."""
    presented = credentials.credentials if credentials is not None else None
    if token_ok(settings, presented) or token_ok(settings, request.cookies.get(COOKIE)):
        return
    raise HTTPException(
        status_code=401,
        detail="this SLO service needs `Authorization: Bearer <token>`",
        headers={"WWW-Authenticate": "Bearer"},
    )


Service = Annotated[SLOService, Depends(get_service)]
Authorized = Depends(require_token)
