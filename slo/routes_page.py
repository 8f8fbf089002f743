"""The HTML page at `/`: every SLO's budget and burn, and the recommendations with their
patches. Server-rendered with Jinja2 (autoescaped), no scripts, no external resources."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.parse
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inferwatch import __version__
from inferwatch.slo.deps import COOKIE, Service, get_settings, token_ok
from inferwatch.slo.models import Advice, SLOStatus
from inferwatch.slo.prom import PrometheusUnavailable
from inferwatch.slo.settings import Settings

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 4096


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        # The templates sit beside this module (page_*.html): the package data's `*.html`.
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["duration"] = duration
    env.filters["percent"] = percent
    env.filters["number"] = number
    env.filters["pretty"] = pretty
    return env


_ENV: Any = None


def render(name: str, **context: Any) -> str:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV.get_template(name).render(**context)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{sign}{s / size:.1f} {unit}"
    return f"{sign}{s:.0f} s"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def pretty(value: Any) -> str:
    """A manifest or patch as YAML (JSON-patch lists as JSON), for a <pre> block."""
    if isinstance(value, list):
        return json.dumps(value, indent=2)
    import yaml

    return yaml.safe_dump(value, sort_keys=False, width=100)


@router.get("/", response_class=HTMLResponse)
def page(
    request: Request,
    service: Service,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    if not _authorized(request, settings):
        return RedirectResponse("/login", status_code=303)
    statuses: list[SLOStatus] = []
    advice: list[Advice] = []
    error = ""
    # Both at once: a slow Prometheus costs the page one timeout, not two.
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="page") as pool:
        wanted = pool.submit(service.statuses), pool.submit(service.advice)
        try:
            statuses, advice = wanted[0].result(), wanted[1].result()
        except PrometheusUnavailable as exc:
            error = str(exc)
    html = render(
        "page_index.html",
        statuses=statuses,
        advice=advice,
        error=error,
        prometheus=service.prometheus.url,
        window=service.config.window,
        version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    return HTMLResponse(html, status_code=503 if error else 200)


def _authorized(request: Request, settings: Settings) -> bool:
    header = request.headers.get("authorization", "")
    bearer = header[7:] if header.lower().startswith("bearer ") else None
    return token_ok(settings, bearer) or token_ok(settings, request.cookies.get(COOKIE))


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return HTMLResponse(render("page_login.html", failed=False, version=__version__))


@router.post("/login")
async def login(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    body = await request.body()
    fields = urllib.parse.parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0]
    if settings.token is None or not token_ok(settings, token):
        html = render("page_login.html", failed=settings.token is not None, version=__version__)
        return HTMLResponse(html, status_code=401 if settings.token is not None else 200)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
