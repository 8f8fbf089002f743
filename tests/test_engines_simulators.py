"""The SGLang, Triton, TensorRT-LLM, llama.cpp and Ollama simulators: the real captures'
families, numbers that move with the load, pages the sidecar reads, and every engine of the
catalog as the demo and the dashboards' tests run it.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import ollama as ollama_adapter
from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Context, Normalizer, engine_info
from inferwatch.simulators import catalog, llamacpp, ollama, sglang, triton
from inferwatch.simulators.model import (
    EngineConfig,
    Observer,
    Request,
    Simulation,
    Step,
    Workload,
    profile,
)
from tests.conftest import FIXTURES, capture

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


# -- SGLang 0.5.x -----------------------------------------------------------------------------

SGLANG_05 = (FIXTURES / "engines" / "sglang-0.5-dp2-pp2.prom").read_text()


class Tally(Observer):
    """What the model did, for comparing with a page."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.preempted: dict[int, int] = {}
        self.prompt_tokens = 0
        self.output_tokens = 0

    def stepped(self, step: Step) -> None:
        self.preempted[step.rank] = self.preempted.get(step.rank, 0) + len(step.preempted)

    def finished(self, req: Request) -> None:
        assert req.finish_reason is not None
        self.outcomes[req.finish_reason] = self.outcomes.get(req.finish_reason, 0) + 1
        if req.finish_reason in ("stop", "length"):
            self.prompt_tokens += req.prompt_tokens
            self.output_tokens += req.output_tokens


def test_sglang_05_page_has_the_families_of_sglang_05() -> None:
    sim = Simulation(EngineConfig(), ranks=2, load=profile("normal"), seed=3)
    writer = sglang.Sglang05Writer(sim, "m")
    sim.advance_to(30)
    page = writer.render().decode()
    # SGLang serves its page in prometheus_client's multiprocess mode: no `_created` series.
    assert "_created" not in page
    real = {k: v for k, v in families(SGLANG_05).items() if not k.endswith("_created")}
    assert families(page) == real
    for name in (
        "sglang:time_to_first_token_seconds",
        "sglang:inter_token_latency_seconds",
        "sglang:e2e_request_latency_seconds",
        "sglang:queue_time_seconds",
    ):
        assert sorted(set(bounds(page, name))) == sorted(set(bounds(SGLANG_05, name))), name


def test_sglang_05_counts_follow_the_model_per_rank() -> None:
    sim = Simulation(EngineConfig(kv_cache_tokens=16384), ranks=2, load=profile("overload"), seed=4)
    writer = sglang.Sglang05Writer(sim, "m")
    tally = Tally()
    sim.subscribe(tally)
    sim.advance_to(90)
    values = Normalizer(registry.get("sglang"), Context()).normalize(writer.render().decode())
    assert values.errors == 0
    got = values.values()
    base = 'engine="sglang",model="m"'
    for e in sim.engines:
        rank = f'{base},rank="{e.rank}"'
        assert got[f"llm_requests_running{{{rank}}}"] == e.num_running
        assert got[f"llm_requests_waiting{{{rank}}}"] == e.num_waiting
        assert got[f"llm_preemptions_total{{{rank}}}"] == tally.preempted[e.rank] > 0
    done = tally.outcomes.get("stop", 0) + tally.outcomes.get("length", 0)
    assert got[f'llm_requests_finished_total{{{base},reason="stop"}}'] == done > 100
    aborted = tally.outcomes.get("abort", 0) + tally.outcomes.get("error", 0)
    assert got.get(f'llm_requests_finished_total{{{base},reason="abort"}}', 0) == aborted
    assert got[f"llm_time_per_output_token_seconds_count{{{base}}}"] > 0


# -- Triton -----------------------------------------------------------------------------------


def test_triton_serving_two_models_reports_each_and_states_each() -> None:
    es = catalog.build("triton", load=profile("normal"), workload=CLEAN, seed=5)
    assert len(es.sim.engines) == len(es.models) == 2
    tally = Tally()
    es.sim.subscribe(tally)
    es.sim.advance_to(60)
    page = es.writer.render().decode()
    adapter = registry.detect(page)
    assert adapter.name == "triton"
    result = Normalizer(adapter, Context()).normalize(page)
    engine_info(result, adapter, Context())
    got = result.values()
    first, second = (f'engine="triton",model="{m}"' for m in es.models)
    # One engine per model: each model's queue and outcomes are its own.
    for labels, e in zip((first, second), es.sim.engines, strict=True):
        assert got[f"llm_requests_waiting{{{labels}}}"] == e.num_waiting
        assert got[f"llm_time_to_first_token_seconds_count{{{labels}}}"] > 0
        assert got[f"llm_engine_info{{{labels}}}"] == 1  # stated per model, not for the first only
    finished = sum(v for k, v in got.items() if k.startswith("llm_requests_finished_total"))
    assert finished == sum(tally.outcomes.values()) > 50
    assert len([k for k in got if k.startswith("llm_engine_info")]) == 2


def test_triton_page_has_the_families_of_triton_24() -> None:
    """The real page's per-model families, with 24.x's failure reasons and the first-response
    histogram of `histogram_latencies=true` (as in the multi-model page built from the docs)."""
    es = catalog.build("triton", load=profile("normal"), seed=2)
    es.sim.advance_to(30)
    page = families(es.writer.render().decode())
    real = families(capture("triton-trtllm-base-nv_inference-readme.prom"))
    multi = families((FIXTURES / "engines" / "triton-multi-model.prom").read_text())
    real["nv_inference_request_failure"] = multi["nv_inference_request_failure"]
    first = "nv_inference_first_response_histogram_ms"
    real[first] = multi[first]
    assert page == real
    assert real["nv_inference_request_failure"][1] == ("model", "reason", "version")


def test_triton_fixture_states_engine_info_for_every_model() -> None:
    text = (FIXTURES / "engines" / "triton-multi-model.prom").read_text()
    adapter = registry.get("triton")
    result = Normalizer(adapter, Context()).normalize(text)
    engine_info(result, adapter, Context())
    info = sorted(k for k in result.values() if k.startswith("llm_engine_info"))
    assert info == [
        'llm_engine_info{engine="triton",model="bert"}',
        'llm_engine_info{engine="triton",model="resnet50"}',
    ]


def test_triton_writer_refuses_models_that_do_not_match_its_engines() -> None:
    sim = Simulation(EngineConfig(), ranks=2, seed=1)
    with pytest.raises(ValueError, match="each served model is one engine"):
        triton.TritonWriter(sim, ["only-one"])
    with pytest.raises(ValueError, match="distinct"):
        triton.TritonWriter(sim, ["same", "same"])


def test_triton_trtllm_options_add_first_response_and_token_histograms() -> None:
    sim = Simulation(EngineConfig(), load=profile("normal"), workload=CLEAN, seed=6)
    writer = triton.TritonTrtllmWriter(
        sim, "tensorrt_llm", histogram_latencies=True, token_histograms=True
    )
    tally = Tally()
    sim.subscribe(tally)
    sim.advance_to(60)
    page = writer.render().decode()
    assert families(page)["nv_llm_input_token_len"] == (
        "histogram",
        ("model", "response_metric_type", "version"),
    )
    assert bounds(page, "nv_inference_first_response_histogram_ms") == [
        100.0, 500.0, 2000.0, 5000.0, math.inf,
    ]  # fmt: skip
    # prometheus-cpp writes `le` after the series' own labels.
    assert 'nv_llm_output_token_len_bucket{model="tensorrt_llm",response_metric_type=' in page
    got = Normalizer(registry.get("trtllm"), Context()).normalize(page).values()
    labels = 'engine="trtllm",model="tensorrt_llm"'
    assert got[f"llm_prompt_tokens_total{{{labels}}}"] == tally.prompt_tokens > 10_000
    assert got[f"llm_generation_tokens_total{{{labels}}}"] == tally.output_tokens > 1000
    assert got[f"llm_time_to_first_token_seconds_count{{{labels}}}"] > 50


# -- every engine of the catalog ----------------------------------------------------------------


@pytest.mark.parametrize("engine", list(catalog.ENGINES))
def test_every_catalog_engine_is_read_by_its_own_adapter(engine: str) -> None:
    kind = catalog.ENGINES[engine]
    es = catalog.build(engine, load=profile("normal"), seed=9)
    es.sim.advance_to(45)
    docs = kind.documents(es)
    adapter = registry.get(engine)
    # The info documents the sidecar asks this engine for are served.
    assert {e.path for e in adapter.info_endpoints} <= docs.keys()
    if kind.needs_proxy:
        # No /metrics: the sidecar polls the engine's documents and measures the traffic.
        assert es.writer.render() == b""
        text = ollama_adapter.loaded_models_page(docs["/api/ps"], docs["/api/version"]["version"])
    else:
        text = es.writer.render().decode()
        assert registry.detect(text).name == engine
    ctx = Context(model=es.model)
    result = Normalizer(adapter, ctx).normalize(text)
    engine_info(result, adapter, ctx)
    assert result.errors == 0
    got = result.values()
    info = {k for k in got if k.startswith("llm_engine_info")}
    assert {k.split('model="')[1].split('"')[0] for k in info} == set(es.models)
    if not kind.needs_proxy:  # every engine with a page counts its load somehow
        assert any(v > 0 for k, v in got.items() if not k.startswith("llm_engine_info"))
