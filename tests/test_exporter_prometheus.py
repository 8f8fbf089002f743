"""Normalized series land in a real Prometheus, with exact values from real captures.

One Prometheus scrapes, by static config with the labels our PodMonitor sets:
- `inferwatch`: the real `inferwatch exporter` in front of pages serving the vLLM 0.32 capture
  and the DCGM capture, as pod cuda-75454ffb9f-8ljq7 in namespace default (the pod DCGM names);
- `inferwatch-other`: a second exporter on the same pages as a pod that owns no GPU;
- `engine-raw`: the vLLM page itself, as Prometheus would scrape the engine directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import capture
from tests.harness.exporter import ExporterProcess
from tests.harness.pages import PageServer
from tests.harness.prometheus import Prometheus, pod_labels, scrape_job

pytestmark = pytest.mark.prometheus

POD = "cuda-75454ffb9f-8ljq7"
NAMESPACE = "default"
DEPLOYMENT = "cuda"
GPU_UUID = "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c"
MIB = 1024 * 1024
# Our target, and the same target labels on every query: selecting one deployment needs no join.
SEL = f'job="inferwatch",namespace="{NAMESPACE}",pod="{POD}",deployment="{DEPLOYMENT}"'


@dataclass
class Stack:
    prom: Prometheus
    exporter: ExporterProcess
    engine_page: PageServer
    dcgm_page: PageServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    engine_page = PageServer(capture("vllm-0.32.0-cpu-tiny-real.prom")).start()
    dcgm_page = PageServer(capture("dcgm-exporter-gpu-operator-v25.10.0.prom")).start()
    exporters: list[ExporterProcess] = []
    prom = None
    try:
        for pod in (POD, "other-7d9f-abcde"):
            exporters.append(
                ExporterProcess(
                    Path(tmp_path_factory.mktemp("exporter")),
                    upstream=engine_page.url,
                    dcgm=dcgm_page.url,
                    timeout=5.0,
                    env={"POD_NAME": pod, "POD_NAMESPACE": NAMESPACE},
                ).start()
            )
        main, other = exporters
        # A 2s interval and timeout leave the exporter 1.5s for its fetches (it answers half a
        # second before Prometheus' deadline): ample on loopback, even on a busy CI machine.
        prom = Prometheus(
            Path(tmp_path_factory.mktemp("prometheus")),
            scrape_configs=[
                scrape_job(
                    "inferwatch",
                    main.address,
                    pod_labels(namespace=NAMESPACE, pod=POD, deployment=DEPLOYMENT),
                    interval="2s",
                ),
                scrape_job(
                    "inferwatch-other",
                    other.address,
                    pod_labels(namespace=NAMESPACE, pod="other-7d9f-abcde", deployment="other"),
                    interval="2s",
                ),
                scrape_job(
                    "engine-raw",
                    f"127.0.0.1:{engine_page.port}",
                    pod_labels(
                        namespace=NAMESPACE, pod=POD, deployment=DEPLOYMENT, container="vllm"
                    ),
                    interval="2s",
                ),
            ],
        ).start()
        prom.wait_targets_up(timeout=60)
        prom.wait_for(f'inferwatch_exporter_upstream_up{{{SEL},source="engine"}} == 1')
        prom.wait_for(f"llm_gpu_memory_free_bytes{{{SEL}}}")
        yield Stack(prom, main, engine_page, dcgm_page)
    finally:
        if prom is not None:
            prom.stop()
        for exp in exporters:
            exp.stop()
        engine_page.stop()
        dcgm_page.stop()


def test_counters_arrive_with_the_captures_exact_values(stack):
    prom = stack.prom
    assert prom.value(f'sum(llm_requests_finished_total{{{SEL},reason="length"}})') == 17
    assert prom.value(f'sum(llm_requests_finished_total{{{SEL},reason="stop"}})') == 0
    assert prom.value(f"llm_prompt_tokens_total{{{SEL}}}") == 127
    assert prom.value(f"llm_generation_tokens_total{{{SEL}}}") == 605
    assert prom.value(f"llm_prefix_cache_queries_total{{{SEL}}}") == 127
    assert prom.value(f"llm_time_to_first_token_seconds_count{{{SEL}}}") == 17
    assert prom.value(f"llm_inter_token_latency_seconds_count{{{SEL}}}") == 588


def test_gpu_series_are_this_pods_gpu_in_base_units(stack):
    prom = stack.prom
    (free,) = prom.vector(f"llm_gpu_memory_free_bytes{{{SEL}}}")
    assert free.value == 20015 * MIB
    assert free.labels["gpu_uuid"] == GPU_UUID
    assert free.labels["gpu"] == "0"
    assert free.labels["gpu_model"] == "NVIDIA RTX 4000 Ada Generation"
    assert prom.value(f"llm_gpu_memory_used_bytes{{{SEL}}}") == 1 * MIB
    assert prom.value(f"llm_gpu_power_watts{{{SEL}}}") == pytest.approx(40.979)
    assert prom.value(f"llm_gpu_energy_joules_total{{{SEL}}}") == pytest.approx(455497.156)
    # DCGM's own pod labels are dropped, so Prometheus' target labels are not renamed.
    assert "exported_pod" not in free.labels and "exported_namespace" not in free.labels
    # The other pod owns no GPU on this node: its exporter reports none.
    assert prom.query('llm_gpu_memory_free_bytes{job="inferwatch-other"}') == []
    assert prom.value('llm_prompt_tokens_total{job="inferwatch-other"}') == 127


def test_histogram_quantile_on_normalized_buckets_matches_the_engines_own(stack):
    prom = stack.prom
    ours = prom.value(
        f"histogram_quantile(0.5, sum by (le) (llm_time_to_first_token_seconds_bucket{{{SEL}}}))"
    )
    raw = prom.value(
        "histogram_quantile(0.5, sum by (le) "
        '(vllm:time_to_first_token_seconds_bucket{job="engine-raw"}))'
    )
    # 17 requests: 4 under 10 ms, 12 under 20 ms; the median (rank 8.5) is interpolated in
    # (0.01, 0.02]: 0.01 + (8.5 - 4) / (12 - 4) * 0.01.
    assert ours == pytest.approx(0.015625)
    assert ours == raw
    p99 = prom.value(
        f"histogram_quantile(0.99, sum by (le) (llm_request_duration_seconds_bucket{{{SEL}}}))"
    )
    assert 0 < p99 < math.inf


def test_every_series_carries_the_target_labels_and_engine_and_model(stack):
    series = stack.prom.series(f"{{{SEL}}}")
    names = {s["__name__"] for s in series}
    assert {
        "llm_requests_running",
        "llm_kv_cache_usage_ratio",
        "llm_engine_info",
        "llm_gpu_utilization_ratio",
        "inferwatch_exporter_build_info",
    } <= names
    for s in series:
        assert (s["namespace"], s["pod"], s["deployment"]) == (NAMESPACE, POD, DEPLOYMENT), s
        name = s["__name__"]
        if name.startswith("llm_") and not name.startswith("llm_gpu_"):
            assert s["engine"] == "vllm" and s["model"] == "tiny", s


def test_no_exported_series_has_a_colon_in_its_name(stack):
    names = {s["__name__"] for s in stack.prom.series('{job=~"inferwatch.*"}')}
    assert names, "the exporter's series did not arrive"
    assert [n for n in names if ":" in n] == []
    # ...while the engine's own page is full of them: the check above is not vacuous.
    raw = {s["__name__"] for s in stack.prom.series('{job="engine-raw"}')}
    assert "vllm:prompt_tokens_total" in raw


def test_exporter_reports_its_upstreams_up(stack):
    prom = stack.prom
    assert prom.value(f'inferwatch_exporter_upstream_up{{{SEL},source="engine"}}') == 1
    assert prom.value(f'inferwatch_exporter_upstream_up{{{SEL},source="dcgm"}}') == 1
    assert prom.value(f'inferwatch_exporter_parse_errors_total{{{SEL},source="engine"}}') == 0
    (info,) = prom.vector(f"llm_engine_info{{{SEL}}}")
    assert info.value == 1
    assert info.labels["block_size"] == "128"
    assert info.labels["kv_cache_tokens"] == "524288"


def test_raw_page_and_exporter_scraped_side_by_side(stack, record_property):
    prom = stack.prom
    targets = {t["labels"]["job"]: t for t in prom.targets()}
    assert targets["inferwatch"]["health"] == "up"
    assert targets["engine-raw"]["health"] == "up"
    raw = prom.value('scrape_duration_seconds{job="engine-raw"}')
    ours = prom.value('scrape_duration_seconds{job="inferwatch"}')
    raw_samples = prom.value('scrape_samples_scraped{job="engine-raw"}')
    our_samples = prom.value('scrape_samples_scraped{job="inferwatch"}')
    record_property("scrape_duration_seconds_engine_raw", raw)
    record_property("scrape_duration_seconds_inferwatch", ours)
    print(
        f"\nscrape_duration_seconds: engine-raw {raw:.6f}s ({raw_samples:.0f} samples), "
        f"inferwatch {ours:.6f}s ({our_samples:.0f} samples, engine + dcgm)"
    )
    assert raw > 0 and ours > 0
    assert 0 < our_samples < raw_samples + 100
