"""The engine simulators: the queueing model, the three writers, the server.

Formats are checked against the real captures (vLLM 0.32, dcgm-exporter) and the hand-made TGI
3.x page built from TGI's source; the model's numbers against what a real engine does under
the same pressure, with fixed seeds so every figure is exact; the server over real HTTP. The
demo that runs them as a fleet is tested in test_demo.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from inferwatch.cli import app
from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Context, Normalizer
from inferwatch.simulators import catalog, dcgm, model, server, tgi
from inferwatch.simulators.model import (
    PROFILES,
    EngineConfig,
    LoadProfile,
    Observer,
    Phase,
    Simulation,
    Workload,
)
from tests.conftest import FIXTURES, UPSTREAM
from tests.harness.exporter import ExporterProcess, sample_value

VLLM_CAPTURE = UPSTREAM / "vllm-0.32.0-cpu-tiny-real.prom"
DCGM_CAPTURE = UPSTREAM / "dcgm-exporter-gpu-operator-v25.10.0.prom"
TGI_FIXTURE = FIXTURES / "engines" / "tgi-3.x.prom"

# Clients that never give up and an engine that never fails: every request ends stop/length.
CLEAN = Workload(patience=math.inf, cancel_probability=0.0, error_probability=0.0)
TGI_CONFIG = catalog.ENGINES["tgi"].config


def families(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, label names) of every family on a page."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for fam in text_string_to_metric_families(text):
        labels: list[str] = []
        for s in fam.samples:
            labels += [k for k in s.labels if k not in ("le", "quantile") and k not in labels]
        out[fam.name] = (fam.type, tuple(labels))
    return out


def buckets(text: str) -> dict[str, list[str]]:
    """Histogram name -> its `le` boundaries as printed, for the first series of each."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"([^{ ]+)_bucket\{(.*)\} ", line)
        if not m:
            continue
        name, labels = m.groups()
        key = name + re.sub(r',?le="[^"]*"', "", labels)
        le = re.search(r'le="([^"]*)"', labels)
        assert le is not None
        if name in out and key not in seen:
            continue
        seen.add(key)
        out.setdefault(name, []).append(le.group(1))
    return out


def value(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` whose labels include `labels`."""
    total, found = 0.0, False
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            # The parser names counter samples `_total` even where the engine (TGI, DCGM) does not.
            names = (sample, f"{sample}_total") if fam.type == "counter" else (sample,)
            if s.name in names and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
                found = True
    assert found, f"no sample {sample}{labels} on the page"
    return total


class Recorder(Observer):
    """What a test wants to know of every event."""

    def __init__(self) -> None:
        self.done: list[model.Request] = []
        self.tokens = 0
        self.preempted = 0
        self.refused: list[str] = []
        self.max_kv = 0.0
        self.sim: Simulation | None = None

    def stepped(self, step: model.Step) -> None:
        self.tokens += len(step.tokens)
        self.preempted += len(step.preempted)
        if self.sim is not None:
            self.max_kv = max(self.max_kv, max(e.kv_usage for e in self.sim.engines))

    def finished(self, req: model.Request) -> None:
        self.done.append(req)

    def refused(self, req: model.Request, reason: str) -> None:
        self.refused.append(reason)


def run(sim: Simulation, seconds: float, dt: float = 1.0) -> Recorder:
    rec = Recorder()
    rec.sim = sim
    sim.subscribe(rec)
    for _ in range(round(seconds / dt)):
        sim.step(dt)
    return rec


def constant(rate: float) -> LoadProfile:
    return LoadProfile(f"{rate}/s", (Phase(3600.0, rate),))


# -- formats: the same families as the real engines ----------------------------------------------


@pytest.mark.parametrize("ranks", [1, 2])
def test_vllm_page_has_exactly_the_families_of_the_real_vllm_capture(ranks: int) -> None:
    es = catalog.build("vllm", load=PROFILES["normal"], ranks=ranks, seed=1)
    es.sim.advance_to(30)
    page = es.writer.render().decode()
    assert families(page) == families(VLLM_CAPTURE.read_text())
    # Each engine core is its own series, as under vLLM's data parallelism.
    ranks_seen = {
        s.labels["engine"]
        for f in text_string_to_metric_families(page)
        if f.name == "vllm:num_requests_running"
        for s in f.samples
    }
    assert ranks_seen == {str(r) for r in range(ranks)}


def test_vllm_histograms_use_the_real_bucket_boundaries() -> None:
    # The capture's model had max_model_len 512, which sets the token histograms' 1-2-5 series.
    config = dataclasses.replace(EngineConfig(), max_model_len=512)
    es = catalog.build("vllm", load=PROFILES["light"], config=config, workload=CLEAN, seed=2)
    es.sim.advance_to(20)
    assert buckets(es.writer.render().decode()) == buckets(VLLM_CAPTURE.read_text())


def test_vllm_page_states_its_cache_config_like_vllm() -> None:
    es = catalog.build("vllm", seed=0)
    page = es.writer.render().decode()
    info = (
        next(f for f in text_string_to_metric_families(page) if f.name == "vllm:cache_config_info")
        .samples[0]
        .labels
    )
    cfg = es.sim.config
    assert info["num_gpu_blocks"] == str(cfg.num_blocks)
    assert info["block_size"] == str(cfg.block_size)
    assert info["kv_cache_size_tokens"] == str(cfg.kv_cache_tokens)
    assert info["gpu_memory_utilization"] == "0.9"
    assert "model_name" not in info  # vLLM states its cache config without the model


def test_dcgm_page_has_the_families_and_label_order_of_the_real_capture() -> None:
    sim = Simulation(load=PROFILES["normal"], seed=3)
    gpus = dcgm.make_gpus(2, dcgm.gpu_spec("l4"), "node-a")
    gpus[0].engine, gpus[0].pod, gpus[0].namespace, gpus[0].container = (
        sim.engines[0],
        "chat-0",
        "demo",
        "vllm",
    )
    writer = dcgm.DcgmWriter(gpus, lambda: sim.now, "node-a")
    sim.advance_to(10)
    page = writer.render().decode()
    ours = families(page)
    real = families(DCGM_CAPTURE.read_text())
    assert ours == real
    assert list(ours) == list(real)  # same order of families, and of labels in each


def test_tgi_page_has_the_families_of_tgi_3() -> None:
    """Compared with the hand-made TGI 3.x page (tests/fixtures/engines), from TGI's source.

    Two differences are TGI's own behaviour, not the simulator's: a series appears only once
    TGI records it, so batch failures and concat timings show up only after those events
    (driven here), and `tgi_batch_total_tokens` is described in the router but never set, so
    `metrics-exporter-prometheus` never renders it (the fixture lists it).
    """
    sim = Simulation(
        TGI_CONFIG,
        load=PROFILES["overload"],
        seed=4,
        workload=Workload(patience=20.0, error_probability=0.05),
    )
    writer = tgi.TgiWriter(sim, "mistral")
    sim.advance_to(60)
    too_long = sim.make_request(prompt_tokens=TGI_CONFIG.max_model_len)
    assert sim.submit(too_long) == model.REFUSED_VALIDATION
    ours = families(writer.render().decode())
    fixture = families(TGI_FIXTURE.read_text())
    only_after_events = {
        "tgi_batch_inference_failure": ("counter", ("method",)),
        "tgi_batch_concat_duration": ("histogram", ("method",)),
    }
    never_set = {"tgi_batch_total_tokens"}
    assert {k: v for k, v in fixture.items() if k not in never_set} == {
        k: v for k, v in ours.items() if k not in only_after_events
    }
    for name, shape in only_after_events.items():
        assert ours[name] == shape


def test_tgi_page_is_in_the_rust_exporter_format() -> None:
    sim = Simulation(TGI_CONFIG, load=PROFILES["normal"], workload=CLEAN, seed=5)
    writer = tgi.TgiWriter(sim, "mistral")
    sim.advance_to(30)
    page = writer.render().decode()
    assert not re.search(r"^\w+_total[{ ]", page, re.M)  # counters keep TGI's own names
    assert re.search(r"^tgi_request_count \d+$", page, re.M)  # integers, no `.0`
    assert "e-" not in page and "e+" not in page  # Rust never prints an exponent
    assert "\n\n# TYPE tgi_batch_max_total_tokens gauge\n" in page  # blank line between families
    le = buckets(page)
    # TGI multiplies 0.0001 by 1.5 step by step; Rust prints each f64's shortest digits.
    assert le["tgi_request_duration"][:3] == [
        "0.00015000000000000001",
        "0.00022500000000000002",
        "0.0003375",
    ]
    assert le["tgi_request_duration"][-2:] == ["145.61096060497135", "+Inf"]
    assert len(le["tgi_request_duration"]) == 36
    assert le["tgi_batch_next_size"][:3] == ["1", "2", "3"]
    assert len(le["tgi_batch_next_size"]) == 1025
    assert le["tgi_request_input_length"][0] == tgi.rust_float(8191 / 100)
    # The summary TGI renders for speculated tokens: quantiles, sum and count.
    assert 'tgi_request_skipped_tokens{quantile="0.999"} 0' in page


def test_tgi_shows_a_series_only_once_tgi_has_recorded_it() -> None:
    sim = Simulation(TGI_CONFIG, load=None, workload=CLEAN, seed=6)
    writer = tgi.TgiWriter(sim, "mistral")
    assert families(writer.render().decode()) == {"tgi_batch_max_total_tokens": ("gauge", ())}
    sim.submit(sim.make_request(prompt_tokens=100, max_tokens=8, stop_at=100))
    sim.drain()
    page = writer.render().decode()
    assert value(page, "tgi_request_success") == 1
    assert "tgi_request_failure" not in page


def test_rust_float_matches_rusts_display() -> None:
    assert tgi.rust_float(1.0) == "1"
    assert tgi.rust_float(0.00015) == "0.00015"
    assert tgi.rust_float(1e-7) == "0.0000001"
    assert tgi.rust_float(1e21) == "1000000000000000000000"
    assert tgi.rust_float(-0.5) == "-0.5"
    assert tgi.rust_float(math.inf) == "inf"


# -- the model: numbers move the way a real engine's do -------------------------------------------


def test_overload_makes_the_queue_grow_and_ttft_rise() -> None:
    normal = Simulation(load=constant(2.0), workload=CLEAN, seed=7)
    overload = Simulation(load=constant(6.0), workload=CLEAN, seed=7)
    calm, busy = run(normal, 120), run(overload, 120)

    def mean_ttft(rec: Recorder) -> float:
        ttfts = [r.ttft() for r in rec.done if r.ttft() is not None]
        return sum(ttfts) / len(ttfts)

    assert normal.engines[0].num_waiting < 5
    assert overload.engines[0].num_waiting > 100
    assert mean_ttft(busy) > 10 * mean_ttft(calm)
    assert mean_ttft(calm) < 0.5
    # Throughput saturates: three times the arrivals do not finish three times the requests.
    assert len(busy.done) < 2 * len(calm.done)


def test_queue_drains_when_the_load_falls() -> None:
    sim = Simulation(
        load=LoadProfile("burst", (Phase(60.0, 8.0), Phase(300.0, 0.5)), repeat=False),
        workload=CLEAN,
        seed=8,
    )
    run(sim, 60)
    peak = sim.engines[0].num_waiting
    run(sim, 240)
    assert peak > 50
    assert sim.engines[0].num_waiting == 0


def test_kv_pressure_preempts_under_vllm_and_queues_under_tgi() -> None:
    small = EngineConfig(max_num_seqs=64, kv_cache_tokens=16384)
    vllm_like = Simulation(small, load=constant(4.0), workload=CLEAN, seed=9)
    tgi_like = Simulation(
        dataclasses.replace(small, reserve_full=True), load=constant(4.0), workload=CLEAN, seed=9
    )
    v, t = run(vllm_like, 120), run(tgi_like, 120)
    assert v.preempted > 10
    assert v.max_kv == pytest.approx(1.0, abs=0.01)
    assert sum(r.preemptions for r in v.done) <= v.preempted
    assert t.preempted == 0  # TGI reserves prompt + max_tokens up front: it never preempts
    assert tgi_like.engines[0].num_waiting > 0
    for sim in (vllm_like, tgi_like):
        engine = sim.engines[0]
        assert 0 <= engine.free_blocks <= small.num_blocks
        held = sum(r.blocks for r in engine.running)
        assert held == small.num_blocks - engine.free_blocks  # no block is lost


def test_preempted_requests_are_recomputed_and_still_finish() -> None:
    small = EngineConfig(max_num_seqs=32, kv_cache_tokens=8192, max_model_len=4096)
    sim = Simulation(small, load=constant(3.0), workload=CLEAN, seed=10)
    rec = run(sim, 60)
    sim.drain()
    preempted = [r for r in rec.done if r.preemptions]
    assert preempted
    for r in preempted:
        assert r.finish_reason in ("stop", "length")
        assert r.output_tokens == min(r.stop_at, r.max_tokens)


def test_counts_are_consistent_between_model_and_page() -> None:
    es = catalog.build("vllm", load=PROFILES["normal"], workload=CLEAN, ranks=2, seed=11)
    rec = run(es.sim, 90)
    es.sim.drain()
    page = es.writer.render().decode()
    finished = value(page, "vllm:request_success_total")
    assert finished == len(rec.done) > 100
    assert value(page, "vllm:time_to_first_token_seconds_count") == finished
    assert value(page, "vllm:e2e_request_latency_seconds_count") == finished
    emitted = sum(r.output_tokens for r in rec.done)
    assert value(page, "vllm:generation_tokens_total") == emitted == rec.tokens
    assert value(page, "vllm:request_generation_tokens_sum") == emitted
    assert value(page, "vllm:inter_token_latency_seconds_count") == emitted - finished
    prompts = sum(r.prompt_tokens for r in rec.done)
    assert value(page, "vllm:prompt_tokens_total") == prompts
    cached = sum(r.cached_tokens for r in rec.done)
    assert value(page, "vllm:prefix_cache_hits_total") == cached > 0
    assert value(page, "vllm:prompt_tokens_by_source_total", source="local_compute") == (
        prompts - cached
    )
    reasons = {
        reason: sum(r.finish_reason == reason for r in rec.done) for reason in ("stop", "length")
    }
    assert reasons["stop"] > 0 and reasons["length"] > 0
    for reason, count in reasons.items():
        assert value(page, "vllm:request_success_total", finished_reason=reason) == count
    assert value(page, "vllm:num_requests_running") == 0
    assert value(page, "vllm:kv_cache_usage_perc") == 0
    # Synthetic clients went through the API server too.
    assert value(page, "http_requests_total", status="2xx") == finished


def test_impatient_clients_abort_and_errors_end_requests() -> None:
    es = catalog.build(
        "vllm",
        load=PROFILES["overload"],
        seed=12,
        workload=Workload(patience=15.0, error_probability=0.02),
    )
    rec = run(es.sim, 120)
    page = es.writer.render().decode()
    aborted = [r for r in rec.done if r.finish_reason == "abort"]
    errors = [r for r in rec.done if r.finish_reason == "error"]
    assert len(aborted) > 50 and errors
    assert all(
        r.finished_at - r.arrival >= 15.0 - 1e-9 for r in aborted if r.deadline == r.arrival + 15.0
    )
    assert value(page, "vllm:request_success_total", finished_reason="abort") == len(aborted)
    assert value(page, "vllm:request_success_total", finished_reason="error") == len(errors)
    # Aborts free their KV cache: nothing is held by requests that are gone.
    engine = es.sim.engines[0]
    assert sum(r.blocks for r in engine.running) == engine.config.num_blocks - engine.free_blocks


def test_step_size_does_not_change_the_outcome() -> None:
    """Events happen at their own times, whatever the step: the model is exact."""
    coarse = Simulation(load=PROFILES["normal"], seed=13)
    fine = Simulation(load=PROFILES["normal"], seed=13)
    a, b = run(coarse, 60, dt=5.0), run(fine, 60, dt=0.05)
    assert [(r.id, r.finish_reason, r.finished_at, r.output_tokens) for r in a.done] == [
        (r.id, r.finish_reason, r.finished_at, r.output_tokens) for r in b.done
    ]
    assert coarse.engines[0].busy_seconds == fine.engines[0].busy_seconds


def test_same_seed_same_page_other_seed_other_page() -> None:
    def page(seed: int) -> dict[str, float]:
        es = catalog.build("vllm", load=PROFILES["normal"], seed=seed)
        es.sim.advance_to(45)
        return {
            s.name + str(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(es.writer.render().decode())
            if f.name.startswith("vllm:") and not f.name.endswith("_created")
            for s in f.samples
        }

    assert page(14) == page(14)
    assert page(14) != page(15)


def test_tgi_batching_waits_for_the_queue_to_be_worth_a_prefill() -> None:
    sim = Simulation(TGI_CONFIG, load=PROFILES["normal"], workload=CLEAN, seed=16)
    writer = tgi.TgiWriter(sim, "mistral")
    sim.advance_to(120)
    page = writer.render().decode()
    concat = value(page, "tgi_batch_concat")
    prefills = value(page, "tgi_batch_inference_count", method="prefill")
    assert 0 < concat < prefills
    assert value(page, "tgi_batch_concat", reason="wait_exceeded") > 0
    assert value(page, "tgi_batch_next_size_count") == prefills
    assert value(page, "tgi_request_success") == value(page, "tgi_request_duration_count")


def test_load_profiles_change_rate_over_time() -> None:
    wave = PROFILES["wave"]
    assert wave.at(10)[0].name == "normal"
    assert wave.at(70)[0].name == "overload"
    assert wave.at(wave.period + 70)[0].name == "overload"  # it repeats
    once = LoadProfile("once", (Phase(10.0, 1.0),), repeat=False)
    assert once.at(11)[0].rate == 0
    sim = Simulation(load=once, seed=17)
    run(sim, 100)
    assert sim.arrivals is not None and math.isinf(sim.arrivals.next_time)


class Arrived(Observer):
    def __init__(self) -> None:
        self.requests: list[model.Request] = []

    def arrived(self, req: model.Request) -> None:
        self.requests.append(req)


def test_arrival_counts_follow_the_profile_rate() -> None:
    for rate in (0.5, 4.0):
        sim = Simulation(load=constant(rate), workload=CLEAN, seed=18)
        arrived = Arrived()
        sim.subscribe(arrived)
        sim.advance_to(400)
        assert len(arrived.requests) == pytest.approx(400 * rate, rel=0.12)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_model_len": 100_000}, "does not fit the KV cache"),
        ({"block_size": 0}, "block_size must be at least 1"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"chunked_prefill": False, "max_num_batched_tokens": 512}, "whole prompt"),
    ],
)
def test_impossible_engine_configs_are_refused_with_the_reason(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**changes)


def test_invalid_profiles_and_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="rate >= 0"):
        LoadProfile("bad", (Phase(10.0, -1.0),))
    with pytest.raises(ValueError, match="known: idle, light"):
        model.profile("nope")
    known = "simulators exist for vllm, tgi, sglang, trtllm, triton, llamacpp, ollama"
    with pytest.raises(ValueError, match=known):
        catalog.engine_kind("mlc-llm")
    with pytest.raises(ValueError, match="no data parallelism"):
        catalog.build("tgi", ranks=2)
    with pytest.raises(ValueError, match="unknown GPU model"):
        dcgm.gpu_spec("tpu")


# -- the sidecar reads every simulator ------------------------------------------------------------


def test_sidecar_normalizes_the_vllm_simulator_per_rank() -> None:
    es = catalog.build("vllm", load=PROFILES["normal"], workload=CLEAN, ranks=2, seed=19)
    es.sim.advance_to(60)
    page = es.writer.render().decode()
    adapter = registry.detect(page)
    assert adapter.name == "vllm"
    result = Normalizer(adapter, Context()).normalize(page)
    assert result.errors == 0
    values = result.values()
    for rank, engine in enumerate(es.sim.engines):
        key = f'engine="vllm",model="{es.model}",rank="{rank}"'
        assert values[f"llm_requests_running{{{key}}}"] == engine.num_running
        assert values[f"llm_kv_cache_usage_ratio{{{key}}}"] == pytest.approx(engine.kv_usage)
    finished = sum(v for k, v in values.items() if k.startswith("llm_requests_finished_total"))
    assert finished == value(page, "vllm:request_success_total")
    assert "llm_preemptions_total" in result.families
    assert "llm_time_per_output_token_seconds" in result.families


def test_sidecar_normalizes_the_tgi_simulator() -> None:
    sim = Simulation(
        TGI_CONFIG,
        load=PROFILES["overload"],
        seed=20,
        workload=Workload(patience=60.0, error_probability=0.0),
    )
    writer = tgi.TgiWriter(sim, "mistral")
    sim.advance_to(90)
    page = writer.render().decode()
    adapter = registry.detect(page)
    assert adapter.name == "tgi"
    result = Normalizer(adapter, Context(model="mistral")).normalize(page)
    assert result.errors == 0
    values = result.values()
    assert values['llm_requests_waiting{engine="tgi",model="mistral"}'] == (
        sim.engines[0].num_waiting
    )
    assert values['llm_requests_finished_total{engine="tgi",model="mistral",reason="stop"}'] == (
        value(page, "tgi_request_success")
    )
    errors = values['llm_requests_finished_total{engine="tgi",model="mistral",reason="error"}']
    assert errors == value(page, "tgi_request_failure", err="overloaded") > 0
    assert "llm_time_to_first_token_seconds" not in result.families  # TGI has none


def test_sidecar_keeps_only_its_pods_gpus_from_the_dcgm_simulator() -> None:
    fleet = [catalog.build("vllm", load=PROFILES["normal"], seed=s) for s in (21, 22)]
    gpus = dcgm.make_gpus(3, dcgm.gpu_spec("a100-80g"), "node-b")
    for gpu, es, pod in zip(gpus, fleet, ("chat-0", "batch-0"), strict=False):
        gpu.engine, gpu.pod, gpu.namespace = es.sim.engines[0], pod, "demo"
    writer = dcgm.DcgmWriter(gpus, lambda: fleet[0].sim.now, "node-b")
    writer.render()
    for es in fleet:
        es.sim.advance_to(30)
    page = writer.render().decode()
    adapter = registry.detect(page, registry.GPU_ADAPTERS)
    result = Normalizer(adapter, Context(pod="batch-0", namespace="demo")).normalize(page)
    assert result.errors == 0
    values = result.values()
    util = {k: v for k, v in values.items() if k.startswith("llm_gpu_utilization_ratio")}
    assert list(util) == [
        f'llm_gpu_utilization_ratio{{gpu="1",gpu_uuid="{gpus[1].uuid}",'
        'gpu_model="NVIDIA A100-SXM4-80GB"}'
    ]
    assert next(iter(util.values())) > 0.5


def test_gpus_follow_their_engines_load() -> None:
    busy = Simulation(load=PROFILES["normal"], seed=23)
    gpus = dcgm.make_gpus(2, dcgm.gpu_spec("l4"), "node-c")
    gpus[0].engine = busy.engines[0]
    writer = dcgm.DcgmWriter(gpus, lambda: busy.now)
    first = writer.render().decode()
    busy.advance_to(120)
    page = writer.render().decode()
    loaded, idle = {"gpu": "0"}, {"gpu": "1"}
    assert value(page, "DCGM_FI_DEV_GPU_UTIL", **loaded) > 50
    assert value(page, "DCGM_FI_DEV_GPU_UTIL", **idle) == 0
    assert value(page, "DCGM_FI_DEV_POWER_USAGE", **loaded) > 2 * value(
        page, "DCGM_FI_DEV_POWER_USAGE", **idle
    )
    assert value(page, "DCGM_FI_DEV_GPU_TEMP", **loaded) > value(
        page, "DCGM_FI_DEV_GPU_TEMP", **idle
    )
    energy = value(page, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", **loaded) - value(
        first, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", **loaded
    )
    # mJ, between idle and board power (plus the 1.5% jitter of the power reading)
    assert 120 * 16 * 1000 < energy < 120 * 72 * 1000 * 1.02
    spec = gpus[0].spec
    assert value(page, "DCGM_FI_DEV_FB_USED", **loaded) == int(0.9 * spec.memory_mib)
    assert value(page, "DCGM_FI_DEV_FB_USED", **idle) == 1
    total = sum(
        value(page, f"DCGM_FI_DEV_FB_{part}", **loaded) for part in ("USED", "FREE", "RESERVED")
    )
    assert total == spec.memory_mib


# -- the server: OpenAI-compatible endpoints over real HTTP ---------------------------------------


async def _serve(es: catalog.EngineSimulator):
    runner, port = await server.start_site(server.EngineServer(es).app(), "127.0.0.1", 0)
    return runner, f"http://127.0.0.1:{port}"


def serve_and(es: catalog.EngineSimulator, scenario) -> None:
    async def main() -> None:
        runner, url = await _serve(es)
        try:
            async with aiohttp.ClientSession() as session:
                await scenario(session, url)
        finally:
            await runner.cleanup()

    asyncio.run(main())


async def _sse(resp: aiohttp.ClientResponse) -> list[tuple[float, str]]:
    """(arrival time, data) of every server-sent event."""
    events = []
    async for line in resp.content:
        text = line.decode().strip()
        if text.startswith("data: "):
            events.append((time.monotonic(), text[6:]))
    return events


def test_completions_answer_with_correct_usage() -> None:
    es = catalog.build("vllm", load=None, workload=CLEAN, seed=24)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        body = {
            "prompt": "The quick brown fox jumps over the lazy dog.",
            "max_tokens": 16,
            "ignore_eos": True,
        }
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200
            doc = await resp.json()
        assert doc["object"] == "text_completion" and doc["model"] == es.model
        assert doc["usage"] == {
            "prompt_tokens": 10,
            "completion_tokens": 16,
            "total_tokens": 26,
            "prompt_tokens_details": None,
        }
        assert len(doc["choices"][0]["text"].split()) == 16
        assert doc["choices"][0]["finish_reason"] == "length"
        tokens = {"prompt": list(range(37)), "max_tokens": 4, "ignore_eos": True}
        async with session.post(f"{url}/v1/completions", json=tokens) as resp:
            assert (await resp.json())["usage"]["prompt_tokens"] == 37
        chat = {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello there!"},
            ],
            "max_tokens": 3,
            "ignore_eos": True,
        }
        async with session.post(f"{url}/v1/chat/completions", json=chat) as resp:
            doc = await resp.json()
        assert doc["object"] == "chat.completion"
        assert doc["choices"][0]["message"]["role"] == "assistant"
        # 3 words and punctuation + 2 messages x 4 + 3 for the reply
        assert doc["usage"]["prompt_tokens"] == 3 + 3 + 2 * 4 + 3
        assert doc["usage"]["completion_tokens"] == 3
        async with session.get(f"{url}/metrics") as resp:
            page = await resp.text()
        assert value(page, "vllm:prompt_tokens_total") == 10 + 37 + 17
        assert value(page, "vllm:generation_tokens_total") == 16 + 4 + 3
        assert value(page, "http_requests_total", handler="/v1/completions", status="2xx") == 2
        assert value(page, "http_requests_total", handler="/v1/chat/completions") == 1

    serve_and(es, scenario)


def test_streams_send_each_token_as_the_model_decodes_it() -> None:
    es = catalog.build("vllm", load=None, workload=CLEAN, seed=25)
    step = es.sim.config.step_overhead

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        body = {
            "messages": [{"role": "user", "content": "Count to twenty."}],
            "max_tokens": 20,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            events = await _sse(resp)
        assert events[-1][1] == "[DONE]"
        chunks = [json.loads(data) for _t, data in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert len(content) == 20
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 20
        times = [t for t, data in events if '"content":" ' in data]
        # 19 decode steps of at least the step overhead each separate first and last token.
        assert times[-1] - times[0] >= 19 * step * 0.9
        assert len({round(t, 3) for t in times}) > 10  # not one burst at the end

    serve_and(es, scenario)


def test_a_client_that_goes_away_aborts_its_request() -> None:
    es = catalog.build("vllm", load=None, workload=CLEAN, seed=26)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        body = {
            "prompt": "Write a long story.",
            "max_tokens": 2000,
            "ignore_eos": True,
            "stream": True,
        }
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            await resp.content.readline()
            await resp.content.readline()
            resp.close()
        for _ in range(100):
            await asyncio.sleep(0.02)
            async with session.get(f"{url}/metrics") as page_resp:
                page = await page_resp.text()
            if value(page, "vllm:request_success_total", finished_reason="abort") == 1:
                break
        assert value(page, "vllm:request_success_total", finished_reason="abort") == 1
        assert value(page, "vllm:num_requests_running") == 0
        assert value(page, "vllm:kv_cache_usage_perc") == 0

    serve_and(es, scenario)


def _error_message(doc: dict) -> str:
    """The message of an engine's error body, whatever its shape."""
    error = doc.get("error", doc)  # SGLang's body is the error object itself
    return error if isinstance(error, str) else error["message"]


@pytest.mark.parametrize("engine", list(catalog.ENGINES))
def test_bad_requests_get_the_engines_errors(engine: str) -> None:
    es = catalog.build(engine, load=None, workload=CLEAN, seed=27)
    limit = es.sim.config.max_model_len

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        cases = [
            (b"{not json", 400, "not valid JSON"),
            (json.dumps({"max_tokens": 5}).encode(), 400, "prompt is required"),
            (json.dumps({"prompt": "hi", "max_tokens": 0}).encode(), 400, "max_tokens"),
            (json.dumps({"prompt": "hi", "n": 2}).encode(), 400, "n > 1"),
            (json.dumps({"prompt": "hi", "model": "other"}).encode(), 404, "does not exist"),
            (
                json.dumps({"prompt": "hi", "max_tokens": limit}).encode(),
                es.kind.validation_status,
                f"maximum context length is {limit}",
            ),
        ]
        for body, status, message in cases:
            async with session.post(
                f"{url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == status, body
                assert message in _error_message(await resp.json())
        async with session.get(f"{url}/metrics") as resp:
            page = await resp.text()
        if engine == "vllm":
            assert value(page, "http_requests_total", status="4xx") == len(cases)
        elif engine == "tgi":
            # The context-length refusal reached the router's validation, like in TGI.
            assert value(page, "tgi_request_failure", err="validation") == 1
            assert value(page, "tgi_request_count") == 1
        elif engine == "triton":
            # Only the request that reached a model counts, as a failure in its backend.
            assert value(page, "nv_inference_request_failure", reason="BACKEND") == 1
            assert value(page, "nv_inference_request_failure") == 1
        elif engine == "trtllm":
            assert value(page, "nv_inference_request_failure") == 1

    serve_and(es, scenario)


def test_triton_sends_each_request_to_its_models_engine() -> None:
    es = catalog.build("triton", load=None, workload=CLEAN, seed=31)
    first, second = es.models

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(f"{url}/v2/models/{second}") as resp:
            assert (await resp.json())["name"] == second
        async with session.get(f"{url}/v1/models") as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == [first, second]
        body = {"model": second, "prompt": "hello", "max_tokens": 4, "ignore_eos": True}
        for _ in range(3):
            async with session.post(f"{url}/v1/completions", json=body) as resp:
                assert resp.status == 200
                assert (await resp.json())["model"] == second
        async with session.get(f"{url}/metrics") as resp:
            page = await resp.text()
        assert value(page, "nv_inference_request_success", model=second) == 3
        assert value(page, "nv_inference_request_success", model=first) == 0
        assert value(page, "nv_inference_first_response_histogram_ms_count", model=second) == 3

    serve_and(es, scenario)


def test_ollama_native_api_through_its_proxying_sidecar(tmp_path: Path) -> None:
    es = catalog.build("ollama", load=None, workload=CLEAN, seed=33)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        sidecar = ExporterProcess(tmp_path, upstream=url, extra_args=["--proxy"])
        await asyncio.to_thread(sidecar.start)
        try:
            proxy = sidecar.url
            # Streamed by default: one token a line, then the counts.
            body = {"model": es.model, "prompt": "Why is the sky blue?"}
            body["options"] = {"num_predict": 12}
            async with session.post(f"{proxy}/api/generate", json=body) as resp:
                assert resp.headers["Content-Type"] == "application/x-ndjson"
                lines = [json.loads(line) for line in (await resp.text()).splitlines()]
            *tokens, final = lines
            assert tokens and all(not t["done"] and t["response"] for t in tokens)
            assert final["done"] and final["done_reason"] in ("stop", "length")
            assert final["eval_count"] == len(tokens) <= 12
            assert final["prompt_eval_count"] == 6 and final["total_duration"] > 0
            chat = {
                "model": es.model,
                "messages": [{"role": "user", "content": "Hello there"}],
                "stream": False,
                "options": {"num_predict": 5},
            }
            async with session.post(f"{proxy}/api/chat", json=chat) as resp:
                whole = await resp.json()
            assert whole["done"] and whole["message"]["content"].strip()
            # An empty prompt only loads the model; an unknown model is refused.
            async with session.post(f"{proxy}/api/generate", json={"model": es.model}) as resp:
                assert (await resp.json())["done_reason"] == "load"
            async with session.post(
                f"{proxy}/api/generate", json={"model": "nope", "prompt": "hi"}
            ) as resp:
                assert resp.status == 404
                assert "not found" in (await resp.json())["error"]
            page = (await asyncio.to_thread(sidecar.metrics)).body
        finally:
            await asyncio.to_thread(sidecar.stop)
        ours = {"engine": "ollama", "model": es.model, "source": "proxy"}
        finished = sample_value(page, "llm_requests_finished_total", **ours, reason="stop") or 0
        finished += sample_value(page, "llm_requests_finished_total", **ours, reason="length") or 0
        assert finished == 2  # the load is not a generation
        generated = sample_value(page, "llm_generation_tokens_total", **ours)
        assert generated == final["eval_count"] + whole["eval_count"]
        assert sample_value(page, "llm_time_to_first_token_seconds_count", **ours) == 1
        refused = {"engine": "ollama", "model": "nope", "reason": "error", "source": "proxy"}
        assert sample_value(page, "llm_requests_finished_total", **refused) == 1
        assert sample_value(page, "llm_engine_info", engine="ollama", model=es.model) == 1

    serve_and(es, scenario)


def test_tgi_simulator_serves_info_and_refuses_when_overloaded() -> None:
    config = dataclasses.replace(TGI_CONFIG, max_in_flight=2)
    es = catalog.build("tgi", load=None, config=config, workload=CLEAN, seed=28)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(f"{url}/info") as resp:
            info = await resp.json()
        assert info["model_id"] == es.model
        assert info["max_concurrent_requests"] == 2
        assert info["max_total_tokens"] == config.max_model_len
        body = {"prompt": "hello", "max_tokens": 200, "ignore_eos": True}
        results = await asyncio.gather(
            *(session.post(f"{url}/v1/completions", json=body) for _ in range(4))
        )
        statuses = sorted(r.status for r in results)
        for r in results:
            r.release()
        assert statuses == [200, 200, 429, 429]
        async with session.get(f"{url}/metrics") as resp:
            page = await resp.text()
        assert value(page, "tgi_request_failure", err="overloaded") == 2
        assert value(page, "tgi_request_success") == 2

    serve_and(es, scenario)


def test_a_load_generator_drives_the_simulators_numbers() -> None:
    from inferwatch.load import LoadSpec
    from inferwatch.load.runner import run_load_async

    es = catalog.build("vllm", load=None, workload=CLEAN, seed=29)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        spec = LoadSpec(url, concurrency=4, requests=24, max_tokens=12, stream=True)
        report = await run_load_async(spec)
        assert report.requests_ok == 24
        async with session.get(f"{url}/metrics") as resp:
            page = await resp.text()
        assert value(page, "vllm:request_success_total") == 24
        assert value(page, "vllm:generation_tokens_total") == report.completion_tokens == 24 * 12
        assert value(page, "vllm:prompt_tokens_total") == report.prompt_tokens
        # Four at a time: the engine batched them.
        assert value(page, "vllm:iteration_tokens_total_count") < 24 * 12

    serve_and(es, scenario)


def test_realtime_runs_the_model_on_the_wall_clock() -> None:
    sim = Simulation(load=PROFILES["normal"], seed=30)

    async def main() -> None:
        clock = model.Realtime(sim)
        clock.start()
        await asyncio.sleep(0.6)
        clock.catch_up()
        await clock.stop()

    start = time.monotonic()
    asyncio.run(main())
    assert 0.55 <= sim.now <= time.monotonic() - start + 0.01
    assert sim.engines[0].busy_seconds > 0


# -- the commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--engine", "mlc-llm"], "simulators exist for vllm, tgi, sglang"),
        (["simulate", "--engine", "vllm", "--listen", "nowhere"], "expected HOST:PORT"),
        (["simulate", "--engine", "vllm", "--profile", "spiky"], "unknown load profile"),
        (["simulate", "--engine", "tgi", "--data-parallel", "2"], "no data parallelism"),
        (["simulate", "--engine", "triton", "--data-parallel", "2"], "no data parallelism"),
        (["simulate", "--engine", "vllm", "--model", "a", "--model", "b"], "serves one model"),
        (["simulate", "--engine", "vllm", "--max-model-len", "999999"], "does not fit"),
        (["simulate", "--engine", "dcgm", "--gpu-model", "tpu"], "unknown GPU model"),
        (["demo", "--duration", "0"], "--duration must be positive"),
    ],
)
def test_commands_refuse_bad_options_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_simulate_says_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app, ["simulate", "--engine", "vllm", "--listen", f"127.0.0.1:{port}"]
        )
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
