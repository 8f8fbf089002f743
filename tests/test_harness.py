"""The harness itself: real Prometheus, Alertmanager and promtool start, answer and stop."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, capture
from tests.harness import loopback, procs, promtool
from tests.harness.exporter import ExporterProcess, sample_value
from tests.harness.pages import Mode
from tests.harness.prometheus import Prometheus, PrometheusError, pod_labels, scrape_job


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); count it as gone (as one reaped meanwhile).
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_free_port_never_repeats():
    ports = {procs.free_port() for _ in range(50)}
    assert len(ports) == 50


def test_process_that_never_gets_ready_fails_with_its_log(tmp_path):
    with pytest.raises(procs.ProcessError) as err:
        procs.start(
            ["sh", "-c", "echo starting up; echo broken config >&2; exit 3"],
            name="broken",
            workdir=tmp_path,
            ready_url=f"http://127.0.0.1:{procs.free_port()}/",
            ready_timeout=5,
        )
    message = str(err.value)
    assert "exited with code 3" in message
    assert "broken config" in message


def test_stop_escalates_to_sigkill(tmp_path):
    proc = procs.start(
        ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        name="stubborn",
        workdir=tmp_path,
    )
    time.sleep(0.2)
    started = time.monotonic()
    code = proc.stop(grace=0.5)
    assert code == -9
    assert time.monotonic() - started < 5
    assert not _pid_alive(proc.pid)
    assert proc not in procs.running()


def test_prometheus_starts_answers_and_scrapes_itself(prometheus_factory):
    prom = prometheus_factory(scrape_configs=[])
    prom.configure(
        scrape_configs=[
            scrape_job(
                "self",
                f"127.0.0.1:{prom.port}",
                pod_labels(namespace="ns-a", pod="pod-0", deployment="dep"),
            )
        ]
    )
    (target,) = prom.wait_targets_up()
    assert target["labels"]["namespace"] == "ns-a"
    assert target["labels"]["deployment"] == "dep"
    up = prom.wait_for('up{job="self"}', lambda r: len(r) == 1)
    assert up[0].value == 1.0
    assert up[0].labels["pod"] == "pod-0"
    assert prom.value("1 + 2") == 3.0
    # A range query over the last seconds sees at least one scrape of the `up` series.
    series = prom.query_range('up{job="self"}', time.time() - 30, time.time(), "1s")
    assert series and all(v == 1.0 for v in series[0].values)


def test_prometheus_reports_bad_promql_with_the_expression(prometheus):
    with pytest.raises(PrometheusError, match=r"sum\(rate\(x\[5m\]\)"):
        prometheus.query("sum(rate(x[5m])")


def test_wait_for_times_out_with_last_result(prometheus):
    with pytest.raises(TimeoutError, match="not satisfied"):
        prometheus.wait_for("vector(7)", lambda r: r[0].value == 8, timeout=1)


def test_reload_refuses_a_broken_config_and_says_why(prometheus_factory):
    prom = prometheus_factory()
    prom.config_path.write_text("scrape_configs: [{job_name: x, scrape_interval: banana}]\n")
    with pytest.raises(PrometheusError, match="reload"):
        prom.reload()


def test_prometheus_stop_leaves_no_process(tmp_path):
    prom = Prometheus(tmp_path).start()
    pid = prom.proc.pid
    assert _pid_alive(pid)
    prom.stop()
    assert not _pid_alive(pid)
    assert prom.proc.returncode == 0  # a clean shutdown on SIGTERM


# -- promtool --------------------------------------------------------------------------------

RULES = """\
groups:
  - name: harness
    rules:
      - alert: QueueTooLong
        expr: llm_requests_waiting > 10
        for: 1m
        labels: {severity: warning}
        annotations: {summary: Queue too long}
"""

RULE_TEST = """\
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'llm_requests_waiting{pod="p"}'
        values: '20x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: QueueTooLong
        exp_alerts:
          - exp_labels: {severity: warning, pod: p}
            exp_annotations: {summary: Queue too long}
"""


def test_promtool_checks_and_tests_rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "test.yaml").write_text(RULE_TEST)
    assert "SUCCESS: 1 rules found" in promtool.check_rules(tmp_path / "rules.yaml")
    assert "SUCCESS" in promtool.test_rules(tmp_path / "test.yaml")


def test_promtool_failures_carry_its_output(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES.replace("> 10", "> > 10"))
    with pytest.raises(promtool.PromtoolError, match=r"rules\.yaml"):
        promtool.check_rules(tmp_path / "rules.yaml")
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "test.yaml").write_text(RULE_TEST.replace("severity: warning, pod", "pod"))
    with pytest.raises(promtool.PromtoolError, match="QueueTooLong"):
        promtool.test_rules(tmp_path / "test.yaml")


def test_backfilled_history_is_queryable_with_known_values(prometheus_factory):
    # Seven days of a counter growing by 60 per minute (1/s) and a constant gauge, at 5-minute
    # resolution, ending an hour before now.
    end = (time.time() // 300) * 300 - 3600
    start = end - 7 * 86400
    steps = range(int((end - start) // 300) + 1)
    counter = promtool.Family("llm_prompt_tokens", "counter").add(
        {"namespace": "ns", "deployment": "d"}, [(start + i * 300, i * 300.0) for i in steps]
    )
    gauge = promtool.Family("llm_kv_cache_usage_ratio").add(
        {"namespace": "ns", "deployment": "d"}, [(start + i * 300, 0.25) for i in steps]
    )
    prom = prometheus_factory(history=promtool.openmetrics([counter, gauge]))
    assert prom.value("llm_prompt_tokens_total", at=end) == 7 * 86400
    assert prom.value("rate(llm_prompt_tokens_total[1h])", at=end) == pytest.approx(1.0)
    assert prom.value("increase(llm_prompt_tokens_total[1d])", at=end) == pytest.approx(86400)
    assert prom.value("avg_over_time(llm_kv_cache_usage_ratio[7d])", at=end) == 0.25
    assert prom.value("count_over_time(llm_kv_cache_usage_ratio[7d])", at=end) == len(steps)
    # Nothing before the history begins.
    assert prom.query("llm_kv_cache_usage_ratio", at=start - 3600) == []


def test_openmetrics_escapes_label_values():
    text = promtool.openmetrics(
        [promtool.Family("x").add({"model": 'a"b\\c\nd'}, [(2.0, 1.0), (1.0, 0.5)])]
    )
    assert text.endswith("# EOF\n")
    assert 'x{model="a\\"b\\\\c\\nd"} 0.5 1.0\nx{model="a\\"b\\\\c\\nd"} 1.0 2.0\n' in text


# -- Alertmanager ----------------------------------------------------------------------------


def test_alertmanager_forwards_a_posted_alert_to_the_webhook(
    alertmanager_factory, webhook_receiver
):
    am = alertmanager_factory(webhook_url=webhook_receiver.url)
    am.post_alert(
        {"alertname": "HarnessCheck", "severity": "page", "namespace": "ns"}, {"summary": "harness"}
    )
    (alert,) = webhook_receiver.wait_for(lambda alerts: len(alerts) >= 1, timeout=15)
    assert alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "HarnessCheck", "severity": "page", "namespace": "ns"}
    assert alert["annotations"] == {"summary": "harness"}
    assert [a["labels"]["alertname"] for a in am.alerts()] == ["HarnessCheck"]
    assert am.status()["cluster"]["status"] == "disabled"


def test_prometheus_sends_firing_alerts_to_alertmanager(
    prometheus_factory, alertmanager_factory, webhook_receiver, tmp_path
):
    am = alertmanager_factory(webhook_url=webhook_receiver.url)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: AlwaysFiring\n    expr: vector(1)\n"
        "    labels: {severity: info}\n"
    )
    prom = prometheus_factory(rule_files=[rules], alertmanager_url=am.url)
    prom.wait_for("ALERTS{alertname='AlwaysFiring', alertstate='firing'}", timeout=15)
    (alert,) = webhook_receiver.wait_for(lambda alerts: alerts, timeout=20)
    assert alert["labels"] == {"alertname": "AlwaysFiring", "severity": "info"}
    assert [r["name"] for g in prom.rules() for r in g["rules"]] == ["AlwaysFiring"]
    assert prom.alerts()[0]["state"] == "firing"


def test_webhook_receiver_times_out_with_what_it_got(webhook_receiver):
    with pytest.raises(TimeoutError, match=r"received \[\]"):
        webhook_receiver.wait_for(lambda alerts: alerts, timeout=0.3)


# -- pages and the exporter ------------------------------------------------------------------


def _fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with loopback.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def test_page_server_modes(page_factory):
    page = page_factory("up 1\n")
    assert _fetch(page.metrics_url) == (200, b"up 1\n")
    page.mode = Mode.DOWN
    with pytest.raises(urllib.error.URLError, match="refused"):
        _fetch(page.metrics_url)
    page.mode = Mode.REFUSE
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        _fetch(page.metrics_url)
    page.mode = Mode.HANG
    with pytest.raises(TimeoutError):
        _fetch(page.metrics_url, timeout=0.5)
    page.mode = Mode.RESET
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        _fetch(page.metrics_url)
    page.mode = Mode.ERROR
    with pytest.raises(urllib.error.HTTPError, match="503"):
        _fetch(page.metrics_url)
    page.huge_bytes = 3 * 1024 * 1024
    page.mode = Mode.HUGE
    status, body = _fetch(page.metrics_url)
    assert status == 200
    assert len(body) == 3 * 1024 * 1024 and body.startswith(b"vllm:num_requests_running")
    page.mode = Mode.NORMAL
    assert _fetch(page.metrics_url) == (200, b"up 1\n")
    # Requests that reached HTTP: not the one to the closed port, nor the refused one.
    assert page.count("/metrics") == 6
    assert page.count("<refused>") == 1


def test_exporter_process_starts_serves_and_stops(exporter_factory, page_factory):
    page = page_factory(capture("vllm-0.32.0-cpu-tiny-real.prom"))
    exp = exporter_factory(upstream=page.url, timeout=2.0)
    answer = exp.metrics()
    assert sample_value(answer.body, "inferwatch_exporter_upstream_up", source="engine") == 1
    assert 0 < exp.rss_bytes() < 500 * 1024 * 1024
    pid = exp.pid
    assert exp.stop() == 0
    assert not _pid_alive(pid)


def test_nothing_started_by_earlier_tests_is_still_running():
    # Each factory stops what it started when its test ends; only session-scoped servers
    # (shared Prometheus/Alertmanager) may still run.
    names = [p.name for p in procs.running()]
    assert all(n.startswith(("prometheus-", "alertmanager-")) for n in names), names


def test_a_port_taken_before_start_is_replaced(tmp_path, page_factory):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        prom = Prometheus(tmp_path / "prom")
        prom.port = taken
        prom.start()
        try:
            assert prom.port != taken and prom.value("vector(1)") == 1
        finally:
            prom.stop()
        page = page_factory("up 1\n")
        exp = ExporterProcess(tmp_path / "exp", upstream=page.url)
        exp._set_port(taken)
        exp.start()
        try:
            assert exp.port != taken and exp.metrics().status == 200
        finally:
            exp.stop()
        assert (
            "address already in use"
            in (tmp_path / "exp" / f"exporter-{taken}.log").read_text().lower()
        )


def test_killing_the_test_process_outright_leaves_no_child(tmp_path):
    # A stand-in for pytest killed with SIGKILL (no finalizers, no atexit): its children die too.
    script = (
        "import sys, time; from pathlib import Path; from tests.harness import procs; "
        "p = procs.start(['sleep', '300'], name='orphan', workdir=Path(sys.argv[1])); "
        "print(p.pid, flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        assert _pid_alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(child)
    finally:
        parent.kill()
        parent.stdout.close()
