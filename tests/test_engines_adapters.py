"""SGLang, TensorRT-LLM, Triton, llama.cpp and Ollama adapters: exact values, ranks, detection.

The real captures (tests/fixtures/upstream/) are the ground truth; the pages under
tests/fixtures/engines/ are written from the engines' own declarations by `build.py`, with
known observations, for the versions no capture covers.
"""

from __future__ import annotations

import pytest

from inferwatch.exporters import llamacpp, ollama, registry, triton
from inferwatch.exporters.normalize import Context, Normalizer, engine_info
from tests.conftest import FIXTURES, capture

ENGINES = FIXTURES / "engines"


def normalized(text: str, engine: str, ctx: Context | None = None) -> dict[str, float]:
    ctx = ctx or Context()
    adapter = registry.get(engine)
    result = Normalizer(adapter, ctx).normalize(text)
    assert result.errors == 0
    engine_info(result, adapter, ctx)
    return result.values()


def page(name: str) -> str:
    return (ENGINES / name).read_text()


def without_buckets(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if "_bucket{" not in k}


def family(values: dict[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in values.items() if k.split("{", 1)[0] == name}


# -- SGLang -----------------------------------------------------------------------------------

LLAMA = 'engine="sglang",model="meta-llama/Llama-3.1-8B-Instruct"'


def test_sglang_docs_capture_exact_values() -> None:
    values = normalized(capture("sglang-docs-production_metrics-00b08c49.prom"), "sglang")
    assert without_buckets(values) == {
        f"llm_requests_running{{{LLAMA}}}": 162,
        f"llm_requests_waiting{{{LLAMA}}}": 2826,
        f"llm_kv_cache_usage_ratio{{{LLAMA}}}": 0.28,
        f"llm_time_to_first_token_seconds_sum{{{LLAMA}}}": 2351897.9474117756,
        f"llm_time_to_first_token_seconds_count{{{LLAMA}}}": 11008,
        # The docs-era per-token histogram is inter-token latency.
        f"llm_inter_token_latency_seconds_sum{{{LLAMA}}}": 866964.5791549598,
        f"llm_inter_token_latency_seconds_count{{{LLAMA}}}": 7400757,
        f"llm_request_duration_seconds_sum{{{LLAMA}}}": 3116093.850019932,
        f"llm_request_duration_seconds_count{{{LLAMA}}}": 11228,
        f"llm_prompt_tokens_total{{{LLAMA}}}": 8128902,
        f"llm_generation_tokens_total{{{LLAMA}}}": 7557572,
        f"llm_engine_info{{{LLAMA}}}": 1,
    }
    ttft = family(values, "llm_time_to_first_token_seconds_bucket")
    assert len(ttft) == 21  # 20 boundaries (0.001 ... 30) and +Inf, kept as the engine set them
    assert ttft[f'llm_time_to_first_token_seconds_bucket{{{LLAMA},le="0.04"}}'] == 1
    assert ttft[f'llm_time_to_first_token_seconds_bucket{{{LLAMA},le="30.0"}}'] == 2513
    assert ttft[f'llm_time_to_first_token_seconds_bucket{{{LLAMA},le="+Inf"}}'] == 11008
    itl = family(values, "llm_inter_token_latency_seconds_bucket")
    assert itl[f'llm_inter_token_latency_seconds_bucket{{{LLAMA},le="0.1"}}'] == 4950195
    # func_latency_seconds{name="generate_request"} is one function's time, not a request's.
    assert not [k for k in values if "generate_request" in k]


QWEN = 'engine="sglang",model="Qwen/Qwen2.5-7B-Instruct"'


def test_sglang_05_ranks_stages_priorities_and_streaming_never_double_count() -> None:
    values = normalized(page("sglang-0.5-dp2-pp2.prom"), "sglang")
    # DP rank 1 carries twice rank 0's figures. Pipeline stage 1 repeats stage 0 and the
    # priority breakdown sits beside the total: neither is added in.
    assert family(values, "llm_requests_running") == {
        f'llm_requests_running{{{QWEN},rank="0"}}': 4,
        f'llm_requests_running{{{QWEN},rank="1"}}': 8,
    }
    assert family(values, "llm_requests_waiting") == {
        f'llm_requests_waiting{{{QWEN},rank="0"}}': 3,
        f'llm_requests_waiting{{{QWEN},rank="1"}}': 6,
    }
    assert family(values, "llm_kv_cache_usage_ratio") == {
        f'llm_kv_cache_usage_ratio{{{QWEN},rank="0"}}': 0.25,
        f'llm_kv_cache_usage_ratio{{{QWEN},rank="1"}}': 0.5,
    }
    assert family(values, "llm_preemptions_total") == {
        f'llm_preemptions_total{{{QWEN},rank="0"}}': 2,
        f'llm_preemptions_total{{{QWEN},rank="1"}}': 4,
    }
    assert family(values, "llm_request_queue_duration_seconds_count") == {
        f'llm_request_queue_duration_seconds_count{{{QWEN},rank="0"}}': 2,
        f'llm_request_queue_duration_seconds_count{{{QWEN},rank="1"}}': 4,
    }
    queue_buckets = family(values, "llm_request_queue_duration_seconds_bucket")
    assert len(queue_buckets) == 2 * 41, "one bucket set per DP rank, none per stage"
    assert (
        queue_buckets[f'llm_request_queue_duration_seconds_bucket{{{QWEN},rank="1",le="0.0"}}'] == 0
    )
    assert (
        queue_buckets[f'llm_request_queue_duration_seconds_bucket{{{QWEN},rank="1",le="0.005"}}']
        == 2
    )
    # Tokenizer figures: no rank, the is_streaming split summed (6 streamed + 3 not).
    assert family(values, "llm_prompt_tokens_total") == {f"llm_prompt_tokens_total{{{QWEN}}}": 9000}
    assert family(values, "llm_generation_tokens_total") == {
        f"llm_generation_tokens_total{{{QWEN}}}": 900
    }
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{QWEN},reason="stop"}}': 9,
        f'llm_requests_finished_total{{{QWEN},reason="abort"}}': 1,
    }
    assert values[f"llm_time_to_first_token_seconds_count{{{QWEN}}}"] == 9
    assert values[f"llm_time_to_first_token_seconds_sum{{{QWEN}}}"] == pytest.approx(2.4)
    assert values[f'llm_time_to_first_token_seconds_bucket{{{QWEN},le="0.2"}}'] == 6
    assert values[f'llm_time_to_first_token_seconds_bucket{{{QWEN},le="0.6"}}'] == 9
    assert values[f"llm_time_per_output_token_seconds_count{{{QWEN}}}"] == 9
    assert values[f"llm_request_duration_seconds_sum{{{QWEN}}}"] == 22.5
    assert values[f"llm_inter_token_latency_seconds_count{{{QWEN}}}"] == 4
    assert values[f"llm_inter_token_latency_seconds_sum{{{QWEN}}}"] == pytest.approx(0.543)
    assert values[f'llm_inter_token_latency_seconds_bucket{{{QWEN},le="0.004"}}'] == 1
    assert len(family(values, "llm_request_duration_seconds_bucket")) == 23
    # The hit-rate gauge cannot become prefix-cache counters.
    assert not family(values, "llm_prefix_cache_hits_total")


def test_sglang_late_2024_names_the_model_in_name() -> None:
    values = normalized(page("sglang-late-2024-name.prom"), "sglang")
    assert without_buckets(values) == {
        f"llm_requests_running{{{LLAMA}}}": 12,
        f"llm_requests_waiting{{{LLAMA}}}": 5,
        f"llm_kv_cache_usage_ratio{{{LLAMA}}}": 0.42,
        f"llm_prompt_tokens_total{{{LLAMA}}}": 300 + 450 + 512 + 794,
        f"llm_engine_info{{{LLAMA}}}": 1,
    }


def test_sglang_pipeline_stage_zero_is_read_even_when_listed_last() -> None:
    labels = 'model_name="m",tp_rank="0",moe_ep_rank="0"'
    text = (
        f'sglang:num_running_reqs{{{labels},pp_rank="1"}} 7\n'
        f'sglang:num_running_reqs{{{labels},pp_rank="0"}} 7\n'
        'sglang:num_running_reqs{model_name="other"} 2\n'
    )
    assert normalized(text, "sglang") == {
        'llm_requests_running{engine="sglang",model="m",rank="0"}': 7,
        'llm_requests_running{engine="sglang",model="other"}': 2,
        'llm_engine_info{engine="sglang",model="m"}': 1,
    }


# -- TensorRT-LLM and Triton --------------------------------------------------------------------

TRT = 'engine="trtllm",model="tensorrt_llm"'


def test_triton_trtllm_inflight_batcher_capture_exact_values() -> None:
    values = normalized(capture("triton-trtllm-inflight-batcher-readme.prom"), "trtllm")
    assert values == {
        f"llm_requests_running{{{TRT}}}": 1,  # request_type="scheduled"
        f"llm_requests_waiting{{{TRT}}}": 1,
        # Each loaded version has its own KV cache: the ratio keeps it, as rank.
        f'llm_kv_cache_usage_ratio{{{TRT},rank="1"}}': 0.4875,
        f"llm_engine_info{{{TRT}}}": 1,
    }


def test_triton_base_capture_exact_values() -> None:
    text = capture("triton-trtllm-base-nv_inference-readme.prom")
    assert registry.detect(text).name == "triton"
    tr = 'engine="triton",model="tensorrt_llm"'
    # This Triton has no failure reasons yet: its failures are errors.
    assert normalized(text, "triton") == {
        f"llm_requests_waiting{{{tr}}}": 0,
        f'llm_requests_finished_total{{{tr},reason="stop"}}': 0,
        f'llm_requests_finished_total{{{tr},reason="error"}}': 0,
        f"llm_engine_info{{{tr}}}": 1,
    }


def test_triton_trtllm_both_pages_as_one_server() -> None:
    text = capture("triton-trtllm-base-nv_inference-readme.prom") + capture(
        "triton-trtllm-inflight-batcher-readme.prom"
    )
    assert registry.detect(text).name == "trtllm"
    values = normalized(text, "trtllm")
    # The backend's queue (1) wins over Triton's pending count (0) for the same model.
    assert values[f"llm_requests_waiting{{{TRT}}}"] == 1
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{TRT},reason="stop"}}': 0,
        f'llm_requests_finished_total{{{TRT},reason="error"}}': 0,
    }


def test_triton_ensemble_models_keep_their_own_queue() -> None:
    text = (
        'nv_inference_pending_request_count{model="ensemble",version="1"} 4\n'
        'nv_inference_pending_request_count{model="tensorrt_llm",version="1"} 0\n'
        'nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 9\n'
    )
    assert family(normalized(text, "trtllm"), "llm_requests_waiting") == {
        'llm_requests_waiting{engine="trtllm",model="ensemble"}': 4,
        'llm_requests_waiting{engine="trtllm",model="tensorrt_llm"}': 9,
    }


SERVE = 'engine="trtllm",model="meta-llama/Llama-3.1-8B-Instruct"'


def test_trtllm_serve_exact_values() -> None:
    values = normalized(page("trtllm-serve-1.x.prom"), "trtllm")
    assert without_buckets(values) == {
        f"llm_requests_running{{{SERVE}}}": 2,
        f"llm_requests_waiting{{{SERVE}}}": 7,
        f"llm_kv_cache_usage_ratio{{{SERVE}}}": 0.375,
        f"llm_time_to_first_token_seconds_count{{{SERVE}}}": 5,
        f"llm_time_to_first_token_seconds_sum{{{SERVE}}}": pytest.approx(2.1),
        f"llm_time_per_output_token_seconds_count{{{SERVE}}}": 5,
        f"llm_time_per_output_token_seconds_sum{{{SERVE}}}": pytest.approx(0.087),
        f"llm_request_duration_seconds_count{{{SERVE}}}": 5,
        f"llm_request_duration_seconds_sum{{{SERVE}}}": pytest.approx(21.1),
        f"llm_request_queue_duration_seconds_count{{{SERVE}}}": 5,
        f"llm_request_queue_duration_seconds_sum{{{SERVE}}}": 2.5,
        f"llm_prompt_tokens_total{{{SERVE}}}": 4096,
        f"llm_generation_tokens_total{{{SERVE}}}": 1200,
        # cancelled counts as abort, the HTTP 500 as error, the 400s not at all.
        f'llm_requests_finished_total{{{SERVE},reason="stop"}}': 3,
        f'llm_requests_finished_total{{{SERVE},reason="length"}}': 1,
        f'llm_requests_finished_total{{{SERVE},reason="abort"}}': 1,
        f'llm_requests_finished_total{{{SERVE},reason="error"}}': 1,
        # Reused + missed blocks are the blocks looked up.
        f"llm_prefix_cache_queries_total{{{SERVE}}}": 120,
        f"llm_prefix_cache_hits_total{{{SERVE}}}": 30,
        f"llm_engine_info{{{SERVE}}}": 1,
    }
    assert values[f'llm_time_to_first_token_seconds_bucket{{{SERVE},le="0.06"}}'] == 2
    assert values[f'llm_time_to_first_token_seconds_bucket{{{SERVE},le="2560.0"}}'] == 5


def test_triton_multi_model_per_model_and_versions_summed() -> None:
    values = normalized(page("triton-multi-model.prom"), "triton")
    bert, resnet = 'engine="triton",model="bert"', 'engine="triton",model="resnet50"'
    assert family(values, "llm_requests_waiting") == {
        f"llm_requests_waiting{{{bert}}}": 1,
        f"llm_requests_waiting{{{resnet}}}": 5,  # versions 1 and 2: 2 + 3
    }
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{bert},reason="stop"}}': 100,
        f'llm_requests_finished_total{{{bert},reason="error"}}': 3
        + 1
        + 0,  # REJECTED+BACKEND+OTHER
        f'llm_requests_finished_total{{{bert},reason="abort"}}': 2,
        f'llm_requests_finished_total{{{resnet},reason="stop"}}': 500,
        f'llm_requests_finished_total{{{resnet},reason="error"}}': 20,
        f'llm_requests_finished_total{{{resnet},reason="abort"}}': 10,
    }
    # Milliseconds to seconds: boundaries and sum; counts unchanged.
    assert family(values, "llm_time_to_first_token_seconds_bucket") == {
        f'llm_time_to_first_token_seconds_bucket{{{bert},le="0.1"}}': 2,
        f'llm_time_to_first_token_seconds_bucket{{{bert},le="0.5"}}': 3,
        f'llm_time_to_first_token_seconds_bucket{{{bert},le="2.0"}}': 4,
        f'llm_time_to_first_token_seconds_bucket{{{bert},le="5.0"}}': 4,
        f'llm_time_to_first_token_seconds_bucket{{{bert},le="+Inf"}}': 5,
        f'llm_time_to_first_token_seconds_bucket{{{resnet},le="0.1"}}': 10,
        f'llm_time_to_first_token_seconds_bucket{{{resnet},le="0.5"}}': 15,
        f'llm_time_to_first_token_seconds_bucket{{{resnet},le="2.0"}}': 20,
        f'llm_time_to_first_token_seconds_bucket{{{resnet},le="5.0"}}': 20,
        f'llm_time_to_first_token_seconds_bucket{{{resnet},le="+Inf"}}': 25,
    }
    assert values[f"llm_time_to_first_token_seconds_sum{{{bert}}}"] == pytest.approx(8.93)
    assert values[f"llm_time_to_first_token_seconds_sum{{{resnet}}}"] == pytest.approx(44.65)
    # The cumulative microsecond counters become nothing: no fake histogram.
    assert not family(values, "llm_request_duration_seconds_count")
    assert not family(values, "llm_request_queue_duration_seconds_count")


def test_triton_gpu_figures_from_the_engine_page() -> None:
    text = page("triton-multi-model.prom")
    # Even in a pod whose GPUs are known, Triton's own page shows only this pod's GPUs.
    values = Normalizer(triton.GPU_ADAPTER, Context()).normalize(text).values()
    gpu1 = 'gpu_uuid="GPU-8e5a1d3c-0000-4000-8000-000000000001"'
    gpu2 = 'gpu_uuid="GPU-8e5a1d3c-0000-4000-8000-000000000002"'
    assert values == {
        f"llm_gpu_utilization_ratio{{{gpu1}}}": 0.5,
        f"llm_gpu_utilization_ratio{{{gpu2}}}": 0.25,
        f"llm_gpu_memory_used_bytes{{{gpu1}}}": 42949672960,
        f"llm_gpu_memory_used_bytes{{{gpu2}}}": 1073741824,
        f"llm_gpu_power_watts{{{gpu1}}}": 312.5,
        f"llm_gpu_power_watts{{{gpu2}}}": 88.25,
        f"llm_gpu_energy_joules_total{{{gpu1}}}": 1234567.5,
        f"llm_gpu_energy_joules_total{{{gpu2}}}": 98765,
    }
    assert registry.PAGE_GPU_ADAPTERS["triton"] is triton.GPU_ADAPTER
    assert registry.PAGE_GPU_ADAPTERS["trtllm"] is triton.GPU_ADAPTER
    assert "vllm" not in registry.PAGE_GPU_ADAPTERS


# -- llama.cpp ------------------------------------------------------------------------------------

QWEN_GGUF = 'engine="llamacpp",model="qwen2.5-7b-instruct-q4_k_m.gguf"'


def test_llamacpp_capture_exact_values_with_model_from_flag() -> None:
    ctx = Context(model="qwen2.5-7b-instruct-q4_k_m.gguf")
    values = normalized(capture("llamacpp-post-pr13660.prom"), "llamacpp", ctx)
    assert values == {
        f"llm_requests_running{{{QWEN_GGUF}}}": 0,
        f"llm_requests_waiting{{{QWEN_GGUF}}}": 0,
        f"llm_prompt_tokens_total{{{QWEN_GGUF}}}": 33065,
        f"llm_generation_tokens_total{{{QWEN_GGUF}}}": 7801,
        f"llm_engine_info{{{QWEN_GGUF}}}": 1,
    }


def test_llamacpp_pre_13660_has_kv_ratio_and_nan_is_never_data() -> None:
    text = page("llamacpp-pre-13660.prom")
    assert "llamacpp:n_busy_slots_per_decode nan" in text
    values = normalized(text, "llamacpp")
    m = 'engine="llamacpp",model="unknown"'
    assert values == {
        f"llm_requests_running{{{m}}}": 2,
        f"llm_requests_waiting{{{m}}}": 1,
        f"llm_kv_cache_usage_ratio{{{m}}}": 0.625,
        f"llm_prompt_tokens_total{{{m}}}": 1200,
        f"llm_generation_tokens_total{{{m}}}": 340,
        f"llm_engine_info{{{m}}}": 1,
    }


def test_llamacpp_counter_typed_averages_are_never_counters() -> None:
    text = page("llamacpp-late-2025.prom")
    assert "# TYPE llamacpp:n_tokens_max counter" in text
    values = normalized(text, "llamacpp")
    assert 8192 not in values.values() and 1.75 not in values.values()
    assert not family(values, "llm_kv_cache_usage_ratio")  # removed by PR #13660
    assert values['llm_requests_running{engine="llamacpp",model="unknown"}'] == 3


def test_llamacpp_info_endpoints() -> None:
    props = {
        "model_path": "/models/qwen2.5-7b-instruct-q4_k_m.gguf",
        "total_slots": 4,
        "build_info": "b6123-7a6e91ad",
        "default_generation_settings": {"n_ctx": 8192},
    }
    props_parser = next(e for e in llamacpp.ADAPTER.info_endpoints if e.path == "/props")
    models_parser = next(e for e in llamacpp.ADAPTER.info_endpoints if e.path == "/v1/models")
    assert props_parser.parse(props) == (
        "qwen2.5-7b-instruct-q4_k_m.gguf",
        {"version": "b6123-7a6e91ad", "max_num_seqs": "4", "max_model_len": "8192"},
    )
    assert props_parser.parse({**props, "model_alias": "qwen"})[0] == "qwen"
    assert props_parser.parse({"total_slots": "four", "default_generation_settings": []}) == (
        None,
        {},
    )
    assert models_parser.parse({"data": [{"id": "qwen"}]}) == ("qwen", {})
    assert models_parser.parse({"data": []}) == (None, {})
    assert models_parser.parse({"data": ["x"]}) == (None, {})


# -- Ollama ---------------------------------------------------------------------------------------

PS = {
    "models": [
        {
            "name": "llama3.2:3b",
            "model": "llama3.2:3b",
            "size": 3183298560,
            "size_vram": 3183298560,
            "context_length": 4096,
            "expires_at": "2026-11-25T16:00:00Z",
        },
        {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "size": 6000000000, "size_vram": 0},
        {"name": "", "size": 1},
        "junk",
    ]
}


def test_ollama_loaded_models_become_engine_info() -> None:
    text = ollama.loaded_models_page(PS, "0.6.5")
    result = Normalizer(ollama.ADAPTER, Context()).normalize(text)
    assert result.errors == 0
    assert result.values() == {
        'llm_engine_info{engine="ollama",model="llama3.2:3b",version="0.6.5",'
        'max_model_len="4096",model_bytes="3183298560",model_vram_bytes="3183298560"}': 1,
        # Entirely in CPU memory: VRAM 0 of 6 GB.
        'llm_engine_info{engine="ollama",model="qwen2.5:7b",version="0.6.5",'
        'model_bytes="6000000000",model_vram_bytes="0"}': 1,
    }


def test_ollama_nothing_loaded_and_hostile_names() -> None:
    assert ollama.loaded_models_page({"models": []}, "0.6.5") == ""
    assert ollama.loaded_models_page({}, None) == ""
    text = ollama.loaded_models_page({"models": [{"model": 'a"b\\c\nd', "size": True}]}, None)
    values = Normalizer(ollama.ADAPTER, Context()).normalize(text).values()
    assert values == {'llm_engine_info{engine="ollama",model="a\\"b\\\\c\\nd"}': 1}


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "engine"),
    [
        (capture("sglang-docs-production_metrics-00b08c49.prom"), "sglang"),
        (capture("triton-trtllm-inflight-batcher-readme.prom"), "trtllm"),
        (capture("triton-trtllm-base-nv_inference-readme.prom"), "triton"),
        (capture("llamacpp-post-pr13660.prom"), "llamacpp"),
        (page("sglang-late-2024-name.prom"), "sglang"),
        (page("sglang-0.5-dp2-pp2.prom"), "sglang"),
        (page("trtllm-serve-1.x.prom"), "trtllm"),
        (page("triton-multi-model.prom"), "triton"),
        (page("llamacpp-pre-13660.prom"), "llamacpp"),
        (page("llamacpp-late-2025.prom"), "llamacpp"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_detection_on_every_capture_and_page(text: str, engine: str) -> None:
    assert registry.detect(text).name == engine


def test_idle_triton_is_detected_by_its_gpu_figures() -> None:
    idle = "\n".join(
        line
        for line in page("triton-multi-model.prom").splitlines()
        if not line.startswith(("nv_inference_", "# HELP nv_inference", "# TYPE nv_inference"))
    )
    assert "nv_inference_" not in idle
    assert registry.detect(idle).name == "triton"


def test_detection_says_what_it_knows_and_what_it_saw() -> None:
    with pytest.raises(registry.DetectionError) as err:
        registry.detect("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n")
    message = str(err.value)
    for name in ("vllm", "tgi", "sglang", "trtllm", "triton", "llamacpp", "ollama"):
        assert name in message
    assert "process_cpu_seconds_total" in message


def test_every_adapter_engine_label_is_in_the_schema() -> None:
    from inferwatch import schema

    assert {a.name for a in registry.ENGINE_ADAPTERS} <= set(schema.ENGINES)
