"""pytest fixtures over the harness. Registered in tests/conftest.py (`pytest_plugins`).

Factories (`prometheus_factory`, `page_factory`, ...) start a fresh instance per call and stop
it after the test. Session-scoped instances (`prometheus`, `alertmanager`) are shared by every
test: use them only as they are (query, post alerts), never reconfigure them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import procs
from tests.harness.alertmanager import Alertmanager, WebhookReceiver
from tests.harness.exporter import ExporterProcess
from tests.harness.pages import PageServer
from tests.harness.prometheus import Prometheus


@pytest.fixture(scope="session", autouse=True)
def _stop_harness_processes() -> Iterator[None]:
    """Nothing the harness started outlives the session, whatever happened in the tests."""
    yield
    procs.stop_all()


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Prometheus]]:
    """`prometheus_factory(scrape_configs=[...], rule_files=[...], ...)` -> a started Prometheus.

    Keyword arguments are those of `Prometheus`; `history=` (OpenMetrics text, see
    `promtool.openmetrics`) is backfilled into its storage before it starts.
    """
    started: list[Prometheus] = []

    def make(*, history: str | None = None, **kwargs: Any) -> Prometheus:
        prom = Prometheus(Path(tmp_path_factory.mktemp("prometheus")), **kwargs)
        if history is not None:
            from tests.harness.promtool import backfill

            backfill(history, prom.storage)
        started.append(prom)
        return prom.start()

    yield make
    for prom in started:
        prom.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A shared, empty Prometheus (no targets, no rules): a PromQL engine to query."""
    prom = Prometheus(Path(tmp_path_factory.mktemp("prometheus-shared"))).start()
    yield prom
    prom.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A fresh webhook receiver that records Alertmanager's notifications."""
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


@pytest.fixture
def alertmanager_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Alertmanager]]:
    """`alertmanager_factory(webhook_url=... | config={...})` -> a started Alertmanager."""
    started: list[Alertmanager] = []

    def make(**kwargs: Any) -> Alertmanager:
        am = Alertmanager(Path(tmp_path_factory.mktemp("alertmanager")), **kwargs)
        started.append(am)
        return am.start()

    yield make
    for am in started:
        am.stop()


@pytest.fixture(scope="session")
def alerting(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Alertmanager, WebhookReceiver]]:
    """A shared Alertmanager routing every alert to a shared webhook receiver.

    Tests sharing it must tell their alerts apart by labels (e.g. a unique `alertname`)."""
    hook = WebhookReceiver().start()
    am = Alertmanager(
        Path(tmp_path_factory.mktemp("alertmanager-shared")), webhook_url=hook.url
    ).start()
    yield am, hook
    am.stop()
    hook.stop()


@pytest.fixture
def page_factory() -> Iterator[Callable[..., PageServer]]:
    """`page_factory(text)` -> a started `PageServer` serving `text` at /metrics."""
    started: list[PageServer] = []

    def make(text: str = "", **kwargs: Any) -> PageServer:
        page = PageServer(text, **kwargs).start()
        started.append(page)
        return page

    yield make
    for page in started:
        page.stop()


@pytest.fixture
def exporter_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ExporterProcess]]:
    """`exporter_factory(upstream=url, dcgm=url, timeout=1.0, env={...})` -> a started sidecar."""
    started: list[ExporterProcess] = []

    def make(**kwargs: Any) -> ExporterProcess:
        exp = ExporterProcess(Path(tmp_path_factory.mktemp("exporter")), **kwargs)
        started.append(exp)
        return exp.start()

    yield make
    for exp in started:
        exp.stop()
