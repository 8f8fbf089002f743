"""schemathesis over the SLO service's own OpenAPI (in-process ASGI), backed by the real
Prometheus of tests/fixtures/slo/history.py: whatever it generates, valid or not, no 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from inferwatch.slo.app import create_app
from inferwatch.slo.prom import Prometheus
from inferwatch.slo.service import ServiceConfig, SLOService
from inferwatch.slo.settings import Settings
from tests.fixtures.slo import history

pytestmark = pytest.mark.prometheus

# The schema is read from the app at import; the service behind it is swapped for one on the
# backfilled Prometheus before any request (the app reads it per request).
APP = create_app(
    Settings(prometheus_url="http://127.0.0.1:9", config=[history.SPECS], kubernetes="off")
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _backed_by_the_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    fleet = history.fleet(tmp_path_factory.mktemp("slo-fleet"))
    prom = Prometheus(fleet.prometheus.url)
    prom.on_query = APP.state.telemetry.on_query
    APP.state.service = SLOService(fleet.specs, prom, ServiceConfig())
    yield
    prom.close()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_server_error(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(checks=[not_a_server_error])
