"""The SLO service's HTML page in headless Chromium (Debian's `chromium`, driven by playwright):
it loads, shows every SLO and the recommendations with their patches, logs no console error,
and a screenshot is written to artifacts/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from inferwatch.slo.app import create_app
from inferwatch.slo.prom import Prometheus
from inferwatch.slo.service import ServiceConfig, SLOService
from inferwatch.slo.settings import Settings
from tests.conftest import ROOT, require_tool
from tests.fixtures.slo import history
from tests.harness import procs

pytestmark = pytest.mark.prometheus

ARTIFACTS = ROOT / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def serving(app: object) -> Iterator[str]:
    """The app over real HTTP on 127.0.0.1, in a thread of this process."""
    import uvicorn

    port = procs.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> history.Fleet:
    return history.fleet(tmp_path_factory.mktemp("slo-fleet"))


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _app(fleet: history.Fleet, **settings: object) -> object:
    prom = Prometheus(fleet.prometheus.url)
    service = SLOService(fleet.specs, prom, ServiceConfig())
    config = Settings(
        prometheus_url=fleet.prometheus.url, config=[history.SPECS], kubernetes="off", **settings
    )
    return create_app(config, service)


def _watch(page: object) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: problems.append(str(e)))  # type: ignore[attr-defined]
    page.on(  # type: ignore[attr-defined]
        "requestfailed", lambda r: problems.append(f"request failed: {r.url}")
    )
    return problems


def test_the_page_shows_slos_and_recommendations(fleet: history.Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    with serving(_app(fleet)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = _watch(page)
        response = page.goto(url + "/", wait_until="load")
        assert response is not None and response.status == 200
        assert page.title() == "inferwatch SLOs"
        names = page.locator("#slos tr.slo").evaluate_all("rows => rows.map(r => r.dataset.slo)")
        assert names == [s.name for s in fleet.specs]
        row = page.locator('tr[data-slo="overloaded-ttft"]')
        assert "page" in row.inner_text() and "ticket" in row.inner_text()
        steady = page.locator('tr[data-slo="steady-chat-availability"]').inner_text()
        assert "60.0%" in steady  # the budget left
        idle = page.locator('section[data-deployment="shop/idle"]')
        assert "recommendations" in idle.locator("h3").inner_text()
        rec = idle.locator('.rec[data-parameter="minReplicas"]')
        assert "minReplicas: 4 → 1" in rec.locator("h4").inner_text()
        rec.locator("details.patch summary").click()
        assert "HorizontalPodAutoscaler" in rec.locator("details.patch").inner_text()
        assert "kubectl -n shop apply -f -" in rec.locator("details.patch").inner_text()
        healthy = page.locator('section[data-deployment="shop/steady-chat"]').inner_text()
        assert "healthy" in healthy and "nothing to change" in healthy
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "slo-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert problems == []


def test_the_page_asks_for_the_token_and_takes_it_once(fleet: history.Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    with serving(_app(fleet, token="page-s3cret")) as url:
        page = browser.new_page()
        problems = _watch(page)
        page.goto(url + "/")
        assert page.url.endswith("/login")
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        assert "not the one" in page.inner_text("main")
        page.fill("#token", "page-s3cret")
        page.click("button[type=submit]")
        page.wait_for_selector("#slos")
        assert page.url == url + "/"
        # Problems other than the deliberate 401 of the wrong token.
        assert [p for p in problems if "401" not in p] == []


def test_the_templates_are_package_data() -> None:
    """A wheel carries the page: every template matches the package-data globs."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["*"]
    templates = sorted((ROOT / "slo").glob("page_*.html"))
    assert [t.name for t in templates] == ["page_base.html", "page_index.html", "page_login.html"]
    for t in templates:
        assert any(fnmatch.fnmatch(t.name, g) for g in globs), t.name
