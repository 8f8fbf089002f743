"""The new engines through the real sidecar and CLI: Triton's GPU figures when there is no DCGM,
auto-detection on a live page, and the proxy mode's command-line errors.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import FIXTURES, UPSTREAM
from tests.harness.exporter import ExporterProcess, sample_value
from tests.harness.pages import PageServer

CLI = [sys.executable, "-m", "inferwatch.cli"]
TRITON = (FIXTURES / "engines" / "triton-multi-model.prom").read_text()
GPU1 = "GPU-8e5a1d3c-0000-4000-8000-000000000001"


def run(*args: str, env: dict | None = None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=60)


def test_sidecar_reads_triton_gpus_from_its_page_in_a_pod(tmp_path) -> None:
    # A pod with its GPUs known: Triton's own page still counts as this pod's GPUs.
    env = {"POD_NAME": "triton-0", "POD_NAMESPACE": "ml", "NVIDIA_VISIBLE_DEVICES": GPU1}
    with PageServer(TRITON) as page:
        exp = ExporterProcess(tmp_path, upstream=page.url, env=env).start()
        try:
            body = exp.metrics().body
        finally:
            exp.stop()
    assert sample_value(body, "llm_gpu_utilization_ratio", gpu_uuid=GPU1) == 0.5
    assert sample_value(body, "llm_gpu_energy_joules_total", gpu_uuid=GPU1) == 1234567.5
    assert sample_value(body, "llm_requests_waiting", engine="triton", model="resnet50") == 5
    assert sample_value(body, "inferwatch_exporter_upstream_up", source="engine") == 1


def test_with_dcgm_the_triton_gpu_figures_are_not_read(tmp_path) -> None:
    dcgm = (UPSTREAM / "dcgm-exporter-gpu-operator-v25.10.0.prom").read_text()
    with PageServer(TRITON) as page, PageServer(dcgm) as gpus:
        exp = ExporterProcess(tmp_path, upstream=page.url, dcgm=gpus.url).start()
        try:
            body = exp.metrics().body
        finally:
            exp.stop()
    assert GPU1 not in body  # one GPU source only: DCGM's
    assert "llm_gpu_temperature_celsius{" in body


def test_normalize_cli_on_triton_and_llamacpp() -> None:
    out = run("normalize", str(FIXTURES / "engines" / "triton-multi-model.prom"))
    assert out.returncode == 0, out.stderr
    assert f'llm_gpu_power_watts{{gpu_uuid="{GPU1}"}} 312.5' in out.stdout
    out = run("normalize", str(UPSTREAM / "llamacpp-post-pr13660.prom"), "--model", "q.gguf")
    assert out.returncode == 0, out.stderr
    assert 'llm_prompt_tokens_total{engine="llamacpp",model="q.gguf"} 33065' in out.stdout


def test_proxy_flags_are_checked() -> None:
    out = run("exporter", "--proxy", "--dcgm", "http://127.0.0.1:1")
    assert out.returncode == 2
    assert "--proxy needs --upstream" in out.stderr
    out = run("exporter", "--proxy", "--upstream", "http://127.0.0.1:1", "--engine", "nope")
    assert out.returncode == 2 and "unknown engine 'nope'" in out.stderr
