"""`inferwatch advise` (from an engine's /metrics and from Prometheus) and `inferwatch slo serve`,
as a user runs them: the real console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.slo import history
from tests.fixtures.slo.servers import ScriptedPage
from tests.harness import procs

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TTFT_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5)


def inferwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def vllm_page(i: int, *, kv: float, running: float, preempted: int, requests: int) -> str:
    """A vLLM V1 page after `i` intervals of `requests` finished requests and `preempted`
    preemptions each; 90% of first tokens under 0.25 s, all under 0.5 s."""
    done = i * requests
    labels = f'engine="0",model_name="{MODEL}"'
    lines = [
        f"vllm:num_requests_running{{{labels}}} {running}",
        f"vllm:num_requests_waiting{{{labels}}} 0.0",
        f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
        f"vllm:num_preemptions_total{{{labels}}} {i * preempted}.0",
        f"vllm:prompt_tokens_total{{{labels}}} {done * 400}.0",
        f"vllm:generation_tokens_total{{{labels}}} {done * 100}.0",
        f'vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{MODEL}"}} '
        f"{done}.0",
        'vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",'
        'gpu_memory_utilization="0.9",num_gpu_blocks="2048"} 1.0',
    ]
    for le in (*TTFT_BOUNDS, "+Inf"):
        share = 0.0 if le == 0.1 else 0.9 if le == 0.25 else 1.0
        lines.append(
            f'vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}} {done * share}'
        )
    lines.append(f"vllm:time_to_first_token_seconds_count{{{labels}}} {done}.0")
    lines.append(f"vllm:time_to_first_token_seconds_sum{{{labels}}} {done * 0.2}")
    return "\n".join(lines) + "\n"


DOCS = {"/version": {"version": "0.11.0"}, "/v1/models": {"data": [{"id": MODEL}]}}


def test_advise_from_an_engines_page_gives_the_same_recommendations_as_json() -> None:
    pages = [vllm_page(i, kv=0.97, running=60, preempted=15, requests=100) for i in range(6)]
    page = ScriptedPage(pages, DOCS).start()
    try:
        out = inferwatch(
            "advise", "--upstream", page.url, "--window", "2s", "--interval", "0.4s",
            "--kubernetes", "off", "--json",
        )  # fmt: skip
    finally:
        page.stop()
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    recs = {r["parameter"]: r for r in doc["recommendations"]}
    assert set(recs) == {"--max-num-seqs", "--kv-cache-dtype"}
    r = recs["--max-num-seqs"]
    for field in ("kind", "target", "current", "proposed", "rationale", "evidence",
                  "expected_effect", "confidence", "patch"):  # fmt: skip
        assert field in r
    assert (r["kind"], r["direction"], r["proposed"]) == ("engine-flag", "lower", 55)
    evidence = {e["name"].split(" over ")[0]: e for e in r["evidence"]}
    # Five intervals of 15 preemptions and 100 requests each, read from the page.
    assert evidence["preemptions"]["value"] == 75
    assert evidence["requests finished"]["value"] == 500
    assert evidence["kv_cache_usage p95"]["value"] == pytest.approx(0.97)
    assert evidence["preemptions"]["source"] == "upstream"
    assert "samples of http://127.0.0.1" in evidence["preemptions"]["note"]
    (deployment,) = doc["deployments"]
    assert deployment["target"]["model"] == MODEL
    assert deployment["flags"]["--gpu-memory-utilization"] == {
        "value": 0.9,
        "source": "engine-info",
        "note": "",
    }
    assert any("dcgm-exporter" in m for m in deployment["missing"])
    assert deployment["objectives"][0]["observed"] == pytest.approx(0.25 + 0.25 * 0.05 / 0.1)


def test_a_healthy_engine_prints_no_recommendation() -> None:
    pages = [vllm_page(i, kv=0.3, running=10, preempted=0, requests=100) for i in range(6)]
    page = ScriptedPage(pages, DOCS).start()
    try:
        out = inferwatch(
            "advise", "--upstream", page.url, "--window", "2s", "--interval", "0.4s",
            "--kubernetes", "off",
        )  # fmt: skip
        as_json = inferwatch(
            "advise", "--upstream", page.url, "--window", "1s", "--interval", "0.25s",
            "--kubernetes", "off", "--json",
        )  # fmt: skip
    finally:
        page.stop()
    assert out.returncode == 0, out.stderr
    assert ": healthy" in out.stdout.splitlines()[0]
    assert "nothing to change" in out.stdout
    assert json.loads(as_json.stdout)["recommendations"] == []


def test_too_short_a_window_says_what_is_missing() -> None:
    pages = [vllm_page(i, kv=0.97, running=60, preempted=15, requests=3) for i in range(4)]
    page = ScriptedPage(pages, DOCS).start()
    try:
        out = inferwatch(
            "advise", "--upstream", page.url, "--window", "1s", "--interval", "0.5s",
            "--kubernetes", "off",
        )  # fmt: skip
    finally:
        page.stop()
    assert out.returncode == 0, out.stderr
    assert "insufficient-data" in out.stdout
    assert "only 3 readings" in out.stdout
    assert "[engine-flag]" not in out.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give --upstream URL"),
        (("--upstream", "http://a", "--prometheus", "http://b"), "give --upstream URL"),
        (("--upstream", "http://127.0.0.1:1", "--window", "soon"), "--window 'soon'"),
        (("--upstream", "http://127.0.0.1:1", "--window", "1s", "--interval", "5s"), "longer"),
        (("--upstream", "http://127.0.0.1:1", "--engine", "nope"), "unknown engine 'nope'"),
        (("--upstream", "http://127.0.0.1:1", "--namespace", 'x"} or vector(1) #'), "not valid"),
        (("--prometheus", "ftp://x"), "expected an http(s) URL"),
        (("--prometheus", "http://x", "--window", "10s"), "at least 1m"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: tuple[str, ...], says: str) -> None:
    out = inferwatch("advise", *args)
    assert out.returncode == 2
    assert says in out.stderr
    assert "Traceback" not in out.stderr


def test_an_engine_that_is_down_or_not_an_engine_is_said_plainly() -> None:
    down = inferwatch("advise", "--upstream", f"http://127.0.0.1:{procs.free_port()}")
    assert down.returncode == 2
    assert down.stderr.startswith("inferwatch advise: cannot read http://127.0.0.1:")
    assert "Traceback" not in down.stderr
    page = ScriptedPage(["# HELP x y\nnode_cpu_seconds_total 3\n"]).start()
    try:
        other = inferwatch("advise", "--upstream", page.url)
    finally:
        page.stop()
    assert other.returncode == 2 and "no engine recognised" in other.stderr


@pytest.mark.prometheus
def test_advise_from_prometheus(tmp_path_factory: pytest.TempPathFactory) -> None:
    fleet = history.fleet(tmp_path_factory.mktemp("slo-fleet"))
    out = inferwatch(
        "advise", "--prometheus", fleet.prometheus.url, "--namespace", "shop",
        "--deployment", "idle", "--config", str(history.SPECS), "--kubernetes", "off",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        "shop/idle (vllm, meta-llama/Llama-3.1-8B-Instruct): recommendations"
    )
    assert "[hpa] minReplicas: 4 (observed) -> 1  (lower, confidence high)" in out.stdout
    assert "Apply (hpa):" in out.stdout and "kubectl -n shop apply -f -" in out.stdout
    missing = inferwatch(
        "advise", "--prometheus", fleet.prometheus.url, "--deployment", "nope", "--json"
    )
    assert missing.returncode == 2 and "no series of deployment 'nope'" in missing.stderr


def test_advise_with_prometheus_down_fails_fast() -> None:
    started = time.monotonic()
    out = inferwatch("advise", "--prometheus", f"http://127.0.0.1:{procs.free_port()}")
    assert time.monotonic() - started < 15
    assert out.returncode == 2 and "unreachable" in out.stderr


def test_slo_serve_refuses_a_malformed_spec_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "slos.yaml"
    bad.write_text(
        "slos:\n"
        "  - name: chat-ttft\n"
        "    namespace: llm\n"
        "    deployment: chat\n"
        "    engine: vllm\n"
        "    sli:\n"
        "      type: latency\n"
        "      metric: llm_time_to_first_token_seconds\n"
        "      threshold: 0.3\n"
        "    objective: 0.99\n"
    )
    out = inferwatch("slo", "serve", "--prometheus", "http://127.0.0.1:9", "--config", str(bad))
    assert out.returncode == 2
    assert f"{bad}:9: slos[0].sli.threshold: 0.3 is not a bucket boundary" in out.stderr
    assert "Traceback" not in out.stderr
    none = inferwatch("slo", "serve", "--config", str(bad))
    assert none.returncode == 2 and "--prometheus" in none.stderr


@pytest.mark.prometheus
def test_slo_serve_serves_the_api(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    fleet = history.fleet(tmp_path_factory.mktemp("slo-fleet"))
    port = procs.free_port()
    proc = procs.start(
        [
            sys.executable, "-m", "inferwatch.cli", "slo", "serve",
            "--prometheus", fleet.prometheus.url, "--config", str(history.SPECS),
            "--listen", f"127.0.0.1:{port}", "--kubernetes", "off", "--log-level", "warning",
        ],
        name="slo-serve",
        workdir=tmp_path,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        ready_timeout=60,
    )  # fmt: skip
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/slos", timeout=30) as answer:
            slos = json.loads(answer.read())
        assert len(slos) == len(fleet.specs)
        assert {s["name"] for s in slos} == {s.name for s in fleet.specs}
    finally:
        proc.stop()
