"""pytest fixtures over the harness. Registered in tests/conftest.py (`pytest_plugins`).

Factories (`prometheus_factory`, ...) start a fresh instance per call and stop it after the
test; the session-scoped ones are shared, so a test must not change their configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import procs
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

    Keyword arguments are those of `Prometheus`; `history=` (OpenMetrics text) is backfilled
    into its storage with promtool before it starts. Each instance is stopped after the test.
    """
    started: list[Prometheus] = []

    def make(*, history: str | None = None, **kwargs: Any) -> Prometheus:
        workdir = Path(tmp_path_factory.mktemp("prometheus"))
        prom = Prometheus(workdir, **kwargs)
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
