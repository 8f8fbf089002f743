"""The canary comparison end to end: simulated variants, real sidecars, a real Prometheus.

Five vLLM simulators run in this process (on one event loop in a thread), each with its own
synthetic Poisson arrivals, behind a real `inferwatch exporter` sidecar each; a real Prometheus
scrapes the sidecars every second with the labels our PodMonitor gives a pod:

- `chat-v1`, the baseline;
- `chat-v1b`, the same engine and load with another seed (an equal candidate);
- `chat-v2-slow`, the same load on an engine whose prompt tokens cost three times as much
  (a slower time to first token);
- `chat-v2-quiet`, the baseline's engine receiving a trickle of requests (too few to judge);
- `chat-gone`, scraped for a few seconds and then stopped (no data in a recent window).

Every simulator records each request it finishes (wall time, reason, time to first token), so
the comparison's figures are checked against what the simulators were told to produce, not
against Prometheus itself. The fleet collects about 80 s of data once, for the whole module.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from inferwatch.cli import app as cli_app
from inferwatch.simulators import catalog, server
from inferwatch.simulators.model import EngineConfig, LoadProfile, Observer, Phase, Request
from inferwatch.simulators.model import Workload as SimWorkload
from inferwatch.slo import compare_prometheus
from inferwatch.slo.app import create_app
from inferwatch.slo.compare_models import Comparison, Ref, Thresholds
from inferwatch.slo.prom import Deadline, Prometheus
from inferwatch.slo.service import ServiceConfig, SLOService
from inferwatch.slo.settings import Settings
from tests.harness.exporter import ExporterProcess
from tests.harness.prometheus import Prometheus as PrometheusServer
from tests.harness.prometheus import pod_labels, scrape_job

pytestmark = pytest.mark.prometheus

NAMESPACE = "llm"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
COLLECT_SECONDS = 80.0
WINDOW = "75s"
RATE = 12.0  # requests/s of the full variants
# Short requests, so that a minute holds enough of them for the tail of a p95.
WORKLOAD = SimWorkload(
    prompt_median=150,
    prompt_sigma=0.5,
    output_median=24,
    output_sigma=0.5,
    max_tokens=64,
    cancel_probability=0.0,
)
SLOW = EngineConfig(prefill_per_token=0.0003)  # three times the default 0.0001 s per token


@dataclass(frozen=True)
class Spec:
    deployment: str
    rate: float
    seed: int
    config: EngineConfig = field(default_factory=EngineConfig)


SPECS = (
    Spec("chat-v1", RATE, 1),
    Spec("chat-v1b", RATE, 2),
    Spec("chat-v2-slow", RATE, 3, SLOW),
    Spec("chat-v2-quiet", 0.05, 4),
    Spec("chat-gone", RATE, 5),
)


class Recorder(Observer):
    """What one simulator finished: (wall time, reason, time to first token)."""

    def __init__(self) -> None:
        self.done: list[tuple[float, str, float | None]] = []

    def finished(self, req: Request) -> None:
        self.done.append((time.time(), req.finish_reason or "", req.ttft()))

    def within(self, start: float, end: float) -> list[tuple[float, str, float | None]]:
        return [d for d in list(self.done) if start < d[0] <= end]


class Simulators:
    """Engine simulators on one event loop in a thread: base URLs and what each finished."""

    def __init__(self, specs: tuple[Spec, ...]):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.urls: dict[str, str] = {}
        self.recorders: dict[str, Recorder] = {}
        self.runners: list = []
        self.thread.start()
        for spec in specs:
            self.urls[spec.deployment] = self._run(self._start(spec))

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self, spec: Spec) -> str:
        load = LoadProfile("steady", (Phase(3600.0, spec.rate),))
        es = catalog.build(
            "vllm", model=MODEL, load=load, workload=WORKLOAD, config=spec.config, seed=spec.seed
        )
        recorder = Recorder()
        es.sim.subscribe(recorder)
        self.recorders[spec.deployment] = recorder
        runner, port = await server.start_site(server.EngineServer(es).app(), "127.0.0.1", 0)
        self.runners.append(runner)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self.runners:
                await runner.cleanup()

        self._run(cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Fleet:
    prom: PrometheusServer
    sims: Simulators
    at: float  # one evaluation time for the module's comparisons

    def ref(self, deployment: str) -> Ref:
        return Ref(NAMESPACE, deployment)

    def compare(self, candidate: str, **thresholds: object) -> Comparison:
        client = Prometheus(self.prom.url)
        try:
            return compare_prometheus.compare_deployments(
                client,
                self.ref("chat-v1"),
                self.ref(candidate),
                WINDOW,
                Thresholds(**thresholds),  # type: ignore[arg-type]
                Deadline(30),
                self.at,
            )
        finally:
            client.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = Path(tmp_path_factory.mktemp("compare"))
    sims = Simulators(SPECS)
    exporters: dict[str, ExporterProcess] = {}
    prom = None
    try:
        jobs = []
        for spec in SPECS:
            pod = f"{spec.deployment}-0"
            exporter = ExporterProcess(
                workdir,
                upstream=sims.urls[spec.deployment],
                timeout=1.0,
                env={"POD_NAME": pod, "POD_NAMESPACE": NAMESPACE},
            ).start()
            exporters[spec.deployment] = exporter
            labels = pod_labels(namespace=NAMESPACE, pod=pod, deployment=spec.deployment)
            jobs.append(scrape_job(spec.deployment, exporter.address, labels))
        prom = PrometheusServer(workdir / "prometheus", scrape_configs=jobs).start()
        prom.wait_targets_up(timeout=60)
        started = time.time()
        # Gone: scraped a few times, then its sidecar stops.
        prom.wait_for('count_over_time(llm_engine_info{deployment="chat-gone"}[1m]) > 2')
        exporters.pop("chat-gone").stop()
        time.sleep(max(0.0, COLLECT_SECONDS - (time.time() - started)))
        yield Fleet(prom, sims, time.time())
    finally:
        if prom is not None:
            prom.stop()
        for exporter in exporters.values():
            exporter.stop()
        sims.stop()


EQUAL_ENOUGH = {  # what a 75-second window resolves; the defaults need more (see below)
    "ttft_max_regression": 0.5,
    "tpot_max_regression": 0.5,
    "e2e_max_regression": 0.5,
    "error_ratio_max_increase": 0.02,
}


@pytest.fixture(scope="module")
def results(fleet: Fleet) -> dict[str, Comparison]:
    return {
        "slow": fleet.compare("chat-v2-slow"),
        "equal": fleet.compare("chat-v1b", **EQUAL_ENOUGH),
        "equal-defaults": fleet.compare("chat-v1b"),
        "quiet": fleet.compare("chat-v2-quiet"),
    }


def _truth(fleet: Fleet, deployment: str) -> list[tuple[float, str, float | None]]:
    """What the simulator finished within the compared window."""
    return fleet.sims.recorders[deployment].within(fleet.at - 75, fleet.at)


def _p95(values: list[float]) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, math.ceil(0.95 * len(data)) - 1)]


def test_a_candidate_with_slower_first_tokens_is_rolled_back(
    fleet: Fleet, results: dict[str, Comparison]
) -> None:
    c = results["slow"]
    assert c.verdict == "rollback", c.summary
    ttft = c.slis["ttft"]
    assert ttft.status == "fail"
    assert ttft.p_value is not None and ttft.significance is not None
    assert ttft.p_value < ttft.significance
    assert c.summary.startswith("Roll back: time to first token: p95")
    # The size the simulators produced: each one's own requests' p95, against the p95 the
    # comparison read through the buckets.
    true_ratio = _p95([t for _w, _r, t in _truth(fleet, "chat-v2-slow") if t is not None]) / _p95(
        [t for _w, _r, t in _truth(fleet, "chat-v1") if t is not None]
    )
    assert true_ratio > 2  # three times the prefill cost
    assert ttft.baseline is not None and ttft.candidate is not None
    assert ttft.candidate / ttft.baseline == pytest.approx(true_ratio, rel=0.35)
    # The shares the test compared are the simulators' own shares of slower requests.
    tail = ttft.details["tail_boundary_seconds"]
    assert isinstance(tail, float)
    for role, deployment in (("baseline", "chat-v1"), ("candidate", "chat-v2-slow")):
        ttfts = [t for _w, _r, t in _truth(fleet, deployment) if t is not None]
        true_share = sum(1 for t in ttfts if t > tail) / len(ttfts)
        assert ttft.details[f"{role}_share_above"] == pytest.approx(true_share, abs=0.03)


def test_request_counts_are_what_the_simulators_finished(
    fleet: Fleet, results: dict[str, Comparison]
) -> None:
    for key, deployment in (("slow", "chat-v2-slow"), ("equal", "chat-v1b")):
        c = results[key]
        for variant, name in ((c.baseline, "chat-v1"), (c.candidate, deployment)):
            finished = len(_truth(fleet, name))
            assert finished > 600
            # increase() extrapolates to the window's edges: a second's worth either way.
            assert variant.requests == pytest.approx(finished, abs=RATE * 1.5 + 0.02 * finished)
    quiet = results["quiet"].candidate
    assert quiet.requests == pytest.approx(len(_truth(fleet, "chat-v2-quiet")), abs=1.5)


def test_equal_variants_are_promoted(results: dict[str, Comparison]) -> None:
    c = results["equal"]
    assert c.verdict == "promote", c.summary
    statuses = {k: r.status for k, r in c.slis.items()}
    assert statuses == {
        "ttft": "pass",
        "tpot": "pass",
        "e2e": "pass",
        "error_ratio": "pass",
        "tokens_per_gpu": "not-judged",
        "kv_cache": "pass",
        "preemptions": "pass",
    }
    assert c.thresholds.ttft_max_regression == 0.5


def test_equal_variants_at_the_default_thresholds_wait_for_more_data(
    results: dict[str, Comparison],
) -> None:
    """75 seconds cannot show a TTFT within 10% of the baseline's: hold, and say how long."""
    c = results["equal-defaults"]
    assert c.verdict == "hold", c.summary
    assert not [k for k, r in c.slis.items() if r.status == "fail"]
    needed = c.needed
    assert needed is not None and needed.factor is not None and needed.seconds is not None
    assert needed.factor > 1
    span = c.candidate.span_seconds
    assert needed.seconds == pytest.approx((needed.factor - 1) * span)
    assert needed.candidate_requests == math.ceil((needed.factor - 1) * c.candidate.requests)  # type: ignore[operator]
    assert f"{needed.candidate_requests} more candidate requests" in c.summary


def test_a_candidate_with_too_few_requests_is_held(
    fleet: Fleet, results: dict[str, Comparison]
) -> None:
    c = results["quiet"]
    assert c.verdict == "hold", c.summary
    n = c.candidate.requests
    assert n is not None and 0 < n < 20
    for key in ("ttft", "tpot", "e2e", "error_ratio", "preemptions"):
        assert c.slis[key].status == "insufficient"
        assert "fewer than the 200 needed" in c.slis[key].reason
    needed = c.needed
    assert needed is not None and needed.candidate_requests is not None
    assert needed.candidate_requests == math.ceil(200 - n)
    # At its trickle of 0.05 requests/s, the rest takes about an hour.
    assert needed.seconds is not None and 1800 < needed.seconds < 7200


def test_every_evidence_query_returns_the_value_shown(
    fleet: Fleet, results: dict[str, Comparison]
) -> None:
    checked = 0
    for c in results.values():
        for r in c.slis.values():
            for e in r.evidence:
                answer = fleet.prom.vector(e.promql, at=c.at)
                got = math.fsum(s.value for s in answer) if answer else None
                if e.value is None:
                    assert got is None, e
                else:
                    assert got == pytest.approx(e.value, rel=1e-6, abs=1e-9), (e.name, e.promql)
                checked += 1
    assert checked > 80


def test_a_comparison_is_seventeen_queries_whatever_the_window(fleet: Fleet) -> None:
    client = Prometheus(fleet.prom.url)
    try:
        for window in ("1m", "75s", "1h"):
            before = client.count
            compare_prometheus.compare_deployments(
                client, fleet.ref("chat-v1"), fleet.ref("chat-v2-slow"), window, Thresholds(),
                Deadline(30), fleet.at,
            )  # fmt: skip
            assert client.count - before == 17
        # Both deployments in each query.
        assert all('deployment=~"chat-v1|chat-v2-slow"' in q for q in list(client.log)[-17:])
    finally:
        client.close()


# ---- the API and the CLI against the fleet --------------------------------------------------


@pytest.fixture(scope="module")
def client(fleet: Fleet) -> Iterator[TestClient]:
    prom = Prometheus(fleet.prom.url)
    service = SLOService((), prom, ServiceConfig(timeout=10))
    settings = Settings(prometheus_url=fleet.prom.url, kubernetes="off")
    yield TestClient(create_app(settings, service))
    prom.close()


def _get(client: TestClient, baseline: str, candidate: str, **params: str) -> httpx.Response:
    query = urllib.parse.urlencode({"baseline": baseline, "candidate": candidate, **params})
    return client.get(f"/v1/compare?{query}")


def test_the_api_compares_with_the_thresholds_it_is_given(client: TestClient) -> None:
    r = _get(client, "llm/chat-v1", "llm/chat-v2-slow", window="75s", ttft_max_regression="0.2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "rollback"
    assert body["thresholds"]["ttft_max_regression"] == 0.2
    assert body["slis"]["ttft"]["status"] == "fail"
    assert body["slis"]["ttft"]["evidence"][0]["promql"].startswith("histogram_quantile(0.95")


@pytest.mark.parametrize(
    ("baseline", "candidate", "window", "message"),
    [
        (
            "llm/chat-v1", "llm/chat-v9", "75s",
            "no series of deployment llm/chat-v9 in Prometheus within the last 7d",
        ),
        (
            "other/chat-v1", "llm/chat-v1b", "75s",
            "no series of deployment other/chat-v1 in Prometheus within the last 7d",
        ),
        (
            "llm/chat-v1", "llm/chat-gone", "1m",
            "no data of deployment llm/chat-gone within the last 1m: it has series within the "
            "last 7d but none in the window",
        ),
    ],
)  # fmt: skip
def test_a_deployment_without_data_in_the_window_is_a_404_naming_it(
    client: TestClient, baseline: str, candidate: str, window: str, message: str
) -> None:
    r = _get(client, baseline, candidate, window=window)
    assert r.status_code == 404, r.text
    assert message in r.json()["detail"]


@pytest.mark.parametrize(
    ("baseline", "candidate", "window", "message"),
    [
        ("llm/chat-v1", 'llm/chat-v1"} or vector(1) #', "75s", "deployment 'chat-v1\"} or"),
        ("llm/chat-v1", "llm/chat-v1|chat-v2-slow", "75s", "is not valid"),
        ('llm"}/chat-v1', "llm/chat-v2-slow", "75s", "namespace 'llm\"}' is not valid"),
        ("llm/.*", "llm/chat-v2-slow", "75s", "deployment '.*' is not valid"),
        ("llm/chat-v1", "llm/chat-v2-slow\n", "75s", "is not valid"),
        ("llm/chat-v1", "chat-v2-slow", "75s", "expected NAMESPACE/DEPLOYMENT"),
        ("llm/chat-v1", "llm/chat-v2-slow", "75s) or vector(1", "expected a Prometheus duration"),
        ("llm/chat-v1", "llm/chat-v2-slow", "40d", "between 1m and 31d"),
    ],
)
def test_bad_input_is_a_clear_422_and_never_reaches_prometheus(
    fleet: Fleet, client: TestClient, baseline: str, candidate: str, window: str, message: str
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    before = service.prometheus.count
    r = _get(client, baseline, candidate, window=window)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert service.prometheus.count == before


runner = CliRunner()


def _cli(fleet: Fleet, candidate: str, *extra: str) -> tuple[int, str, str]:
    args = ["compare", "--prometheus", fleet.prom.url, "--baseline", "llm/chat-v1",
            "--candidate", candidate, "--window", WINDOW, *extra]  # fmt: skip
    result = runner.invoke(cli_app, args)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_exit_code_is_the_verdict(fleet: Fleet, tmp_path: Path) -> None:
    code, out, _err = _cli(fleet, "llm/chat-v2-slow")
    assert code == 1
    assert "verdict: rollback (exit code 1)\nRoll back: time to first token" in out
    assert re.search(r"time to first token p95 +\d+(\.\d+)? ms +\d+(\.\d+)? ms +\+\d", out)
    code, out, _err = _cli(fleet, "llm/chat-v2-quiet")
    assert code == 3
    assert "verdict: hold (exit code 3)\nHold: not enough data" in out
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("".join(f"{k}: {v}\n" for k, v in EQUAL_ENOUGH.items()))
    code, out, _err = _cli(fleet, "llm/chat-v1b", "--thresholds", str(thresholds), "--json")
    assert code == 0, out
    body = json.loads(out)
    assert body["verdict"] == "promote"
    assert set(body["slis"]) == {
        "ttft", "tpot", "e2e", "error_ratio", "tokens_per_gpu", "kv_cache", "preemptions",
    }  # fmt: skip
    assert body["slis"]["error_ratio"]["threshold"] == 0.02


def test_the_cli_names_an_unknown_deployment_in_one_line(fleet: Fleet) -> None:
    code, out, err = _cli(fleet, "llm/chat-v9")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("inferwatch compare: no series of deployment llm/chat-v9")
