"""`inferwatch normalize`: exit codes, messages and output, run as a user would."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import FIXTURES, UPSTREAM

CLI = [sys.executable, "-m", "inferwatch.cli"]


def run(*args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_normalize_a_capture_with_dcgm_and_pod_identity() -> None:
    env = {"POD_NAME": "cuda-75454ffb9f-8ljq7", "POD_NAMESPACE": "default", "PATH": "/usr/bin"}
    out = run(
        "normalize",
        str(UPSTREAM / "vllm-0.32.0-cpu-tiny-real.prom"),
        "--dcgm",
        str(UPSTREAM / "dcgm-exporter-gpu-operator-v25.10.0.prom"),
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert 'llm_generation_tokens_total{engine="vllm",model="tiny",rank="0"} 605.0' in out.stdout
    assert "llm_gpu_memory_free_bytes{" in out.stdout
    other_pod = run(
        "normalize",
        str(UPSTREAM / "vllm-0.32.0-cpu-tiny-real.prom"),
        "--dcgm",
        str(UPSTREAM / "dcgm-exporter-gpu-operator-v25.10.0.prom"),
        env={**env, "POD_NAME": "someone-else"},
    )
    assert "llm_gpu_" not in other_pod.stdout


def test_normalize_stdin_with_model_flag() -> None:
    page = (FIXTURES / "engines" / "tgi-3.x.prom").read_text()
    out = run("normalize", "-", "--model", "mistral", stdin=page)
    assert out.returncode == 0
    assert 'llm_requests_waiting{engine="tgi",model="mistral"} 4' in out.stdout


def test_unknown_engine_page_fails_with_one_line_and_no_traceback() -> None:
    out = run("normalize", "-", stdin="# TYPE node_load1 gauge\nnode_load1 0.5\n")
    assert out.returncode != 0
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert "no engine recognised" in out.stderr and "Traceback" not in out.stderr


def test_dcgm_page_as_engine_says_what_to_do() -> None:
    out = run("normalize", str(UPSTREAM / "dcgm-exporter-gpu-operator-v25.10.0.prom"))
    assert out.returncode != 0
    assert "pass it as --dcgm" in out.stderr


def test_broken_lines_keep_good_ones_and_report_the_count() -> None:
    page = (UPSTREAM / "vllm-0.32.0-cpu-tiny-real.prom").read_text()
    page = page.replace(
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0',
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} zero',
    )
    page += 'vllm:num_requests_running{engine="1" broken\n'
    out = run("normalize", "-", stdin=page)
    assert out.returncode == 0
    assert "llm_requests_waiting{" not in out.stdout
    assert 'llm_generation_tokens_total{engine="vllm",model="tiny",rank="0"} 605.0' in out.stdout
    assert "skipped 2 line(s)" in out.stderr


def test_missing_file_and_unknown_engine_flag() -> None:
    missing = run("normalize", "/nonexistent/page.prom")
    assert missing.returncode == 2 and "cannot read /nonexistent/page.prom" in missing.stderr
    bad = run("normalize", str(UPSTREAM / "vllm-v0-0.6.x-idle.prom"), "--engine", "foo")
    assert bad.returncode == 2 and "unknown engine 'foo'" in bad.stderr
    assert "Traceback" not in missing.stderr + bad.stderr


def test_exporter_flag_errors_are_one_line() -> None:
    out = run("exporter", "--upstream", "http://127.0.0.1:1", "--listen", "nonsense")
    assert out.returncode == 2 and "expected HOST:PORT" in out.stderr
    out = run("exporter")
    assert out.returncode == 2 and "--upstream" in out.stderr
