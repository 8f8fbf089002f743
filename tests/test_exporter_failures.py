"""The real exporter process against upstreams that fail in every way we know.

Whatever the engine does (down, refusing, hanging, garbage, 50 MB, reset mid-body, slow drip),
a scrape of the sidecar is answered within its timeout with
`inferwatch_exporter_upstream_up{source="engine"} 0`, the process stays up with bounded memory,
and the next healthy page is reported again.
"""

from __future__ import annotations

import http.client
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import capture
from tests.harness.exporter import Answer, ExporterProcess, sample_value
from tests.harness.pages import Mode, PageServer

VLLM = "vllm-0.32.0-cpu-tiny-real.prom"
TIMEOUT = 1.0
# Time beyond the fetch deadline a loaded 2-core CI machine may need to render and answer.
SLACK = 0.5
RSS_BOUND = 80 * 1024 * 1024
# What the exporter should say about each failure (in /readyz and its log), case-insensitive.
FAILURES = {
    Mode.DOWN: "connect",
    Mode.REFUSE: "reset|disconnect|closed",
    Mode.ERROR: "HTTP 503",
    Mode.HANG: "timed out",
    Mode.GARBAGE: "no engine recognised",
    Mode.HUGE: "cap",
    Mode.HUGE_DECLARED: "cap",
    Mode.RESET: "payload|reset|content.length",
    Mode.DRIP: "timed out",
}


def engine_up(answer: Answer) -> float | None:
    return sample_value(answer.body, "inferwatch_exporter_upstream_up", source="engine")


def assert_healthy(exporter: ExporterProcess) -> None:
    """The exporter is alive and reports the capture's values again."""
    assert exporter.proc is not None and exporter.proc.alive, exporter.proc.log_tail()
    answer = exporter.metrics()
    assert engine_up(answer) == 1
    assert sample_value(answer.body, "llm_prompt_tokens_total") == 127


@pytest.fixture(scope="module")
def page() -> PageServer:
    server = PageServer(capture(VLLM)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exporter(page: PageServer, tmp_path_factory: pytest.TempPathFactory) -> ExporterProcess:
    exp = ExporterProcess(
        Path(tmp_path_factory.mktemp("exporter")), upstream=page.url, timeout=TIMEOUT
    ).start()
    yield exp
    exp.stop()


@pytest.fixture(autouse=True)
def _healthy_page_after_each_test(request: pytest.FixtureRequest):
    yield
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        page.mode = Mode.NORMAL
        page.delay = 0.0


@pytest.mark.parametrize("mode", list(FAILURES), ids=str)
def test_failing_upstream_is_reported_down_in_time_and_the_exporter_recovers(
    mode: Mode, page: PageServer, exporter: ExporterProcess
):
    assert_healthy(exporter)
    page.mode = mode

    answer = exporter.get("/metrics")
    assert answer.status == 200
    assert answer.seconds < TIMEOUT + SLACK, f"{mode}: answered after {answer.seconds:.2f}s"
    assert engine_up(answer) == 0
    # What the engine did not report is absent, never a zero.
    assert sample_value(answer.body, "llm_prompt_tokens_total") is None
    assert sample_value(answer.body, "inferwatch_exporter_build_info", version=None) is None
    assert "inferwatch_exporter_build_info{" in answer.body

    ready = exporter.get("/readyz")
    assert ready.status == 503
    assert ready.body.startswith(f"not ready: {page.metrics_url}: ")
    assert ready.seconds < 2.0 + SLACK  # /readyz waits at most 2s for the engine
    assert re.search(FAILURES[mode], ready.body, re.IGNORECASE), ready.body

    page.mode = Mode.NORMAL
    assert_healthy(exporter)
    log = exporter.proc.log()
    assert "Traceback" not in log
    assert '"event": "upstream down"' in log


def test_huge_pages_again_and_again_keep_memory_bounded(page, exporter):
    assert_healthy(exporter)
    before = exporter.rss_bytes()
    for mode in (Mode.HUGE, Mode.HUGE_DECLARED) * 4:
        page.mode = mode
        assert engine_up(exporter.metrics()) == 0
    # Several scrapes at once during a huge page: one shared fetch, not one buffer each.
    page.mode = Mode.HUGE
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: exporter.metrics(), range(4)))
    assert [engine_up(a) for a in answers] == [0, 0, 0, 0]
    after = exporter.rss_bytes()
    print(
        f"\nexporter RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after "
        f"12 pages of {page.huge_bytes / 2**20:.0f} MB"
    )
    assert after < RSS_BOUND
    page.mode = Mode.NORMAL
    assert_healthy(exporter)


def test_prometheus_scrape_timeout_header_shortens_the_deadline(page, tmp_path):
    # A generous --timeout: only the header can make the exporter answer in time.
    exp = ExporterProcess(tmp_path, upstream=page.url, timeout=10.0).start()
    try:
        page.mode = Mode.HANG
        answer = exp.metrics({"X-Prometheus-Scrape-Timeout-Seconds": "2"})
        # The exporter answers half a second before Prometheus would give up.
        assert 1.0 < answer.seconds < 2.0, answer.seconds
        assert engine_up(answer) == 0
        # A header shorter than the margin still leaves the fetch a minimum of time.
        answer = exp.metrics({"X-Prometheus-Scrape-Timeout-Seconds": "0.3"})
        assert answer.seconds < 0.3 + SLACK
        page.mode = Mode.DRIP
        answer = exp.metrics({"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
        assert answer.seconds < 1.5 and engine_up(answer) == 0
    finally:
        page.mode = Mode.NORMAL
        exp.stop()


@pytest.mark.parametrize("header", ["soon", "", "nan", "-3"])
def test_malformed_scrape_timeout_header_never_breaks_the_scrape(page, exporter, header):
    page.mode = Mode.HANG
    answer = exporter.metrics({"X-Prometheus-Scrape-Timeout-Seconds": header})
    assert answer.seconds < TIMEOUT + SLACK
    assert engine_up(answer) == 0
    page.mode = Mode.NORMAL
    answer = exporter.metrics({"X-Prometheus-Scrape-Timeout-Seconds": header})
    assert engine_up(answer) == 1


def test_concurrent_scrapes_share_one_upstream_fetch(page, exporter):
    assert_healthy(exporter)
    page.reset_counts()
    page.delay = 0.5  # long enough for every scrape to arrive while the fetch runs
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: exporter.metrics(), range(8)))
    assert page.count("/metrics") == 1
    assert {engine_up(a) for a in answers} == {1}
    assert {sample_value(a.body, "llm_generation_tokens_total") for a in answers} == {605}
    # Sharing is only among scrapes in flight together: the next one fetches afresh.
    exporter.metrics()
    assert page.count("/metrics") == 2


def test_readyz_follows_the_engine_and_healthz_never_does(page_factory, exporter_factory):
    page = page_factory(capture(VLLM))
    page.mode = Mode.DOWN  # the engine is still loading its model when the sidecar starts
    exp = exporter_factory(upstream=page.url, timeout=TIMEOUT)

    ready = exp.get("/readyz")
    assert ready.status == 503
    assert ready.body.startswith(f"not ready: {page.metrics_url}: ")
    assert exp.get("/healthz").status == 200
    assert engine_up(exp.metrics()) == 0

    page.mode = Mode.NORMAL
    ready = exp.get("/readyz")
    assert (ready.status, ready.body) == (200, f"ready: vllm at {page.metrics_url}\n")
    assert engine_up(exp.metrics()) == 1

    page.mode = Mode.HANG
    healthz = exp.get("/healthz")
    assert healthz.status == 200 and healthz.seconds < SLACK
    ready = exp.get("/readyz")
    assert ready.status == 503 and "timed out" in ready.body


def test_a_failing_dcgm_does_not_hide_the_engine(page_factory, exporter_factory):
    engine = page_factory(capture(VLLM))
    dcgm = page_factory(capture("dcgm-exporter-gpu-operator-v25.10.0.prom"))
    exp = exporter_factory(
        upstream=engine.url,
        dcgm=dcgm.url,
        timeout=TIMEOUT,
        env={"POD_NAME": "cuda-75454ffb9f-8ljq7", "POD_NAMESPACE": "default"},
    )
    answer = exp.metrics()
    assert sample_value(answer.body, "inferwatch_exporter_upstream_up", source="dcgm") == 1
    assert sample_value(answer.body, "llm_gpu_memory_free_bytes") == 20015 * 1024 * 1024

    dcgm.mode = Mode.HANG
    answer = exp.metrics()
    assert answer.seconds < TIMEOUT + SLACK
    assert engine_up(answer) == 1
    assert sample_value(answer.body, "inferwatch_exporter_upstream_up", source="dcgm") == 0
    assert sample_value(answer.body, "llm_prompt_tokens_total") == 127
    # GPU figures we could not read are absent, not zero.
    assert [line for line in answer.body.splitlines() if line.startswith("llm_gpu_")] == []
    # The engine's readiness does not depend on DCGM.
    assert exp.get("/readyz").status == 200


def _scrape_in_background(exp: ExporterProcess) -> tuple[threading.Thread, list]:
    """Start a scrape in a thread; its Answer, or the error that ended it, lands in the list."""
    results: list[Answer | Exception] = []

    def scrape() -> None:
        try:
            results.append(exp.get("/metrics"))
        except (OSError, http.client.HTTPException) as exc:
            results.append(exc)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    return thread, results


def test_sigterm_lets_a_slow_scrape_finish_then_exits_zero(page_factory, exporter_factory):
    page = page_factory(capture(VLLM))
    exp = exporter_factory(upstream=page.url, timeout=5.0)
    exp.metrics()
    page.reset_counts()
    # Slow, but within the exporter's timeout and its 5s drain; longer than half the drain,
    # where aiohttp stops waiting politely and starts cancelling.
    page.delay = 3.5
    thread, results = _scrape_in_background(exp)
    while page.count("/metrics") == 0:
        time.sleep(0.01)

    sent = time.monotonic()
    exp.proc.signal(signal.SIGTERM)
    assert exp.proc.wait(timeout=5.0 + SLACK) == 0
    exited = time.monotonic() - sent
    thread.join(5)

    (answer,) = results
    assert isinstance(answer, Answer), f"the scrape in flight got no answer: {answer!r}"
    assert answer.status == 200
    assert engine_up(answer) == 1
    assert sample_value(answer.body, "llm_prompt_tokens_total") == 127
    assert exited < 5.0 + SLACK
    assert '"event": "draining"' in exp.proc.log()


def test_sigterm_exits_within_the_drain_time_even_with_a_hung_scrape(
    page_factory, exporter_factory
):
    page = page_factory(capture(VLLM))
    exp = exporter_factory(upstream=page.url, timeout=30.0)
    exp.metrics()
    page.reset_counts()
    page.mode = Mode.HANG
    thread, results = _scrape_in_background(exp)
    while page.count("/metrics") == 0:
        time.sleep(0.01)
    sent = time.monotonic()
    exp.proc.signal(signal.SIGTERM)
    assert exp.proc.wait(timeout=5.0 + 2 * SLACK) == 0
    assert time.monotonic() - sent < 5.0 + 2 * SLACK
    # The hung scrape was cut off at the end of the drain (Prometheus had given up on it).
    thread.join(5)
    assert len(results) == 1
    assert "Traceback" not in exp.proc.log()
