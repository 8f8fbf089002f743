"""The SGLang, Triton TensorRT-LLM, llama.cpp and Ollama simulators: the real captures' families,
numbers that move with the load, and pages the sidecar reads.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import ollama as ollama_adapter
from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Context, Normalizer
from inferwatch.simulators import llamacpp, ollama, sglang, triton
from inferwatch.simulators.model import EngineConfig, Simulation, Workload, profile
from tests.conftest import capture

CLEAN = Workload(patience=math.inf, cancel_probability=0.0, error_probability=0.0)


def families(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, label names in order of first appearance) of every family on a page."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for fam in text_string_to_metric_families(text):
        labels: list[str] = []
        for s in fam.samples:
            labels += [k for k in s.labels if k != "le" and k not in labels]
        out[fam.name] = (fam.type, tuple(sorted(labels)))
    return out


def run(writer_cls, model: str, seconds: float = 60.0, rate: str = "normal"):
    sim = Simulation(EngineConfig(), load=profile(rate), workload=CLEAN, seed=7)
    writer = writer_cls(sim, model)
    sim.advance_to(seconds)
    return sim, writer, writer.render().decode()


CASES = [
    (sglang.SglangWriter, "sglang", ["sglang-docs-production_metrics-00b08c49.prom"]),
    (
        triton.TritonTrtllmWriter,
        "trtllm",
        [
            "triton-trtllm-base-nv_inference-readme.prom",
            "triton-trtllm-inflight-batcher-readme.prom",
        ],
    ),
    (llamacpp.LlamacppWriter, "llamacpp", ["llamacpp-post-pr13660.prom"]),
]


@pytest.mark.parametrize(("writer_cls", "engine", "captures"), CASES, ids=lambda v: str(v)[:20])
def test_simulator_has_exactly_the_families_of_the_real_capture(writer_cls, engine, captures):
    _sim, _writer, page = run(writer_cls, "tensorrt_llm")
    real = "".join(capture(name) for name in captures)
    assert families(page) == families(real)
    if engine == "sglang":  # histogram boundaries as the capture prints them
        for name in ("sglang:time_to_first_token_seconds", "sglang:func_latency_seconds"):
            assert bounds(page, name) == bounds(real, name)


def bounds(text: str, name: str) -> list[float]:
    prefix = name + "_bucket"
    return [float(ln.split('le="')[1].split('"')[0]) for ln in text.splitlines()
            if ln.startswith(prefix)]  # fmt: skip


@pytest.mark.parametrize(("writer_cls", "engine", "captures"), CASES, ids=lambda v: str(v)[:20])
def test_the_sidecar_reads_the_simulator_and_the_numbers_follow_the_model(
    writer_cls, engine, captures
):
    sim, _writer, page = run(writer_cls, "m")
    adapter = registry.detect(page)
    assert adapter.name == engine
    result = Normalizer(adapter, Context(model="m")).normalize(page)
    assert result.errors == 0
    values = result.values()
    engines = sim.engines
    running = sum(e.num_running for e in engines)
    assert values[f'llm_requests_running{{engine="{engine}",model="m"}}'] == running
    assert running > 0, "a normal load keeps the engine busy"
    if engine != "trtllm":
        generated = values[f'llm_generation_tokens_total{{engine="{engine}",model="m"}}']
        assert generated > 1000
    if engine != "llamacpp":
        # Triton's KV ratio keeps the model version, as `rank`.
        rank = ',rank="1"' if engine == "trtllm" else ""
        kv = values[f'llm_kv_cache_usage_ratio{{engine="{engine}",model="m"{rank}}}']
        assert kv == pytest.approx(engines[0].kv_usage, abs=0.01)


def test_overload_fills_the_queue_every_engine_reports() -> None:
    for writer_cls, engine, _captures in CASES:
        sim, _writer, page = run(writer_cls, "m", seconds=90.0, rate="overload")
        adapter = registry.get(engine)
        values = Normalizer(adapter, Context(model="m")).normalize(page).values()
        waiting = values[f'llm_requests_waiting{{engine="{engine}",model="m"}}']
        assert waiting == sum(e.num_waiting for e in sim.engines) > 10, engine


def test_llamacpp_average_is_nan_before_any_decode() -> None:
    sim = Simulation(EngineConfig(), load=None, seed=1)
    page = llamacpp.LlamacppWriter(sim, "m").render().decode()
    assert "llamacpp:n_busy_slots_per_decode nan" in page
    assert "llamacpp:requests_processing 0" in page


def test_triton_counts_outcomes_and_microseconds() -> None:
    _sim, _writer, page = run(triton.TritonTrtllmWriter, "tensorrt_llm")
    values = {
        s.name: s.value
        for fam in text_string_to_metric_families(page)
        for s in fam.samples
        if not s.labels.get("request_type") and not s.labels.get("kv_cache_block_type")
    }
    finished = values["nv_inference_request_success_total"]
    assert finished > 50
    # Mean request time, as a user would compute it from the counters, is seconds-sized.
    mean = values["nv_inference_request_duration_us_total"] / finished / 1e6
    assert 0.5 < mean < 60


def test_ollama_documents_feed_the_poller() -> None:
    sim = Simulation(EngineConfig(), load=None, seed=1)
    writer = ollama.OllamaWriter(sim, "llama3.2:3b")
    assert writer.render() == b""
    text = ollama_adapter.loaded_models_page(writer.ps(), writer.version)
    values = Normalizer(ollama_adapter.ADAPTER, Context()).normalize(text).values()
    (key,) = values
    assert key.startswith('llm_engine_info{engine="ollama",model="llama3.2:3b",version="0.6.5"')
    assert f'max_model_len="{sim.config.max_model_len}"' in key
