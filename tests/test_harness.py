"""The harness itself: real Prometheus, Alertmanager and promtool start, answer and stop."""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import procs
from tests.harness.prometheus import Prometheus, PrometheusError, pod_labels, scrape_job


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); count it as gone.
    with open(f"/proc/{pid}/status") as f:
        return "\nState:\tZ" not in f.read()


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
