"""The vLLM, TGI and DCGM adapters on real captures and on pages written from the engines' source.

Every value is asserted exactly, as the normalized sample text the exporter serves.
"""

from __future__ import annotations

import pytest

from inferwatch.exporters import registry
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


def family(values: dict[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in values.items() if k.split("{", 1)[0] == name}


V1_TINY = 'engine="vllm",model="tiny",rank="0"'


def test_vllm_032_real_capture_exact_values() -> None:
    values = normalized(capture("vllm-0.32.0-cpu-tiny-real.prom"), "vllm")
    assert family(values, "llm_requests_running") == {f"llm_requests_running{{{V1_TINY}}}": 0}
    assert family(values, "llm_prompt_tokens_total") == {
        f"llm_prompt_tokens_total{{{V1_TINY}}}": 127
    }
    assert family(values, "llm_generation_tokens_total") == {
        f"llm_generation_tokens_total{{{V1_TINY}}}": 605
    }
    # `repetition` folds into `stop`; admission rejections carry no engine-core rank.
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{V1_TINY},reason="stop"}}': 0,
        f'llm_requests_finished_total{{{V1_TINY},reason="length"}}': 17,
        f'llm_requests_finished_total{{{V1_TINY},reason="abort"}}': 0,
        f'llm_requests_finished_total{{{V1_TINY},reason="error"}}': 0,
        'llm_requests_finished_total{engine="vllm",model="tiny",reason="error"}': 0,
    }
    assert values[f"llm_time_to_first_token_seconds_count{{{V1_TINY}}}"] == 17
    assert values[f"llm_time_to_first_token_seconds_sum{{{V1_TINY}}}"] == 0.28847575187683105
    assert values[f"llm_inter_token_latency_seconds_count{{{V1_TINY}}}"] == 588
    assert values[f"llm_time_per_output_token_seconds_sum{{{V1_TINY}}}"] == 0.051058183337833046
    assert values[f"llm_request_duration_seconds_sum{{{V1_TINY}}}"] == 2.089956283569336
    assert values[f"llm_request_queue_duration_seconds_count{{{V1_TINY}}}"] == 17
    assert values[f"llm_prefix_cache_queries_total{{{V1_TINY}}}"] == 127
    assert values[f"llm_prefix_cache_hits_total{{{V1_TINY}}}"] == 0
    assert values[f"llm_preemptions_total{{{V1_TINY}}}"] == 0
    assert values[f"llm_kv_cache_usage_ratio{{{V1_TINY}}}"] == 0
    # Buckets keep vLLM's boundaries, in canonical float text; the `+Inf` bucket is the count.
    ttft = family(values, "llm_time_to_first_token_seconds_bucket")
    assert len(ttft) == 23
    assert ttft[f'llm_time_to_first_token_seconds_bucket{{{V1_TINY},le="+Inf"}}'] == 17
    assert f'llm_time_to_first_token_seconds_bucket{{{V1_TINY},le="2560.0"}}' in ttft
    assert family(values, "llm_engine_info") == {
        'llm_engine_info{engine="vllm",model="tiny",rank="0",block_size="128",'
        'gpu_memory_utilization="0.92",kv_cache_blocks="4096",kv_cache_tokens="524288",'
        'kv_cache_dtype="auto",prefix_caching="true"}': 1
    }


def test_vllm_v0_idle_capture_drops_sentinels_and_swap() -> None:
    values = normalized(capture("vllm-v0-0.6.x-idle.prom"), "vllm")
    m = 'engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"'
    assert values == {
        f"llm_requests_running{{{m}}}": 0,
        f"llm_requests_waiting{{{m}}}": 0,
        f"llm_kv_cache_usage_ratio{{{m}}}": 0,
        f"llm_preemptions_total{{{m}}}": 0,
        f"llm_prompt_tokens_total{{{m}}}": 0,
        f"llm_generation_tokens_total{{{m}}}": 0,
        f'llm_engine_info{{{m},block_size="16",gpu_memory_utilization="0.9",'
        'kv_cache_blocks="2375",kv_cache_dtype="auto",prefix_caching="false",'
        'swap_space_bytes="4294967296",kv_cache_tokens="38000"}': 1,
    }
    assert not any(v < 0 for v in values.values()), "the -1 hit-rate sentinel became data"


def test_vllm_v0_busy_maps_per_token_histogram_to_inter_token_latency() -> None:
    values = normalized((ENGINES / "vllm-v0-0.6-busy.prom").read_text(), "vllm")
    m = 'engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"'
    assert values[f"llm_requests_waiting{{{m}}}"] == 3
    assert values[f"llm_kv_cache_usage_ratio{{{m}}}"] == 0.875
    assert values[f"llm_inter_token_latency_seconds_count{{{m}}}"] == 4
    assert values[f"llm_inter_token_latency_seconds_sum{{{m}}}"] == pytest.approx(0.38)
    assert values[f'llm_inter_token_latency_seconds_bucket{{{m},le="0.025"}}'] == 2
    assert not family(values, "llm_time_per_output_token_seconds_count")
    assert values[f'llm_request_duration_seconds_bucket{{{m},le="1.0"}}'] == 1
    assert values[f'llm_request_duration_seconds_bucket{{{m},le="60.0"}}'] == 3
    assert values[f'llm_request_duration_seconds_bucket{{{m},le="+Inf"}}'] == 4
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{m},reason="stop"}}': 2,
        f'llm_requests_finished_total{{{m},reason="length"}}': 1,
        f'llm_requests_finished_total{{{m},reason="abort"}}': 1,
    }
    assert values[f"llm_preemptions_total{{{m}}}"] == 5


QWEN = 'engine="vllm",model="Qwen/Qwen2.5-7B-Instruct"'


@pytest.mark.parametrize("page", ["vllm-0.10-transition-dp2.prom", "vllm-0.12-v1-dp2.prom"])
def test_vllm_v1_keeps_every_engine_core_as_rank_and_never_doubles(page: str) -> None:
    values = normalized((ENGINES / page).read_text(), "vllm")
    # Rank 1 carries twice rank 0's figures; both survive, each exactly once.
    assert family(values, "llm_kv_cache_usage_ratio") == {
        f'llm_kv_cache_usage_ratio{{{QWEN},rank="0"}}': 0.25,
        f'llm_kv_cache_usage_ratio{{{QWEN},rank="1"}}': 0.5,
    }
    assert family(values, "llm_prefix_cache_queries_total") == {
        f'llm_prefix_cache_queries_total{{{QWEN},rank="0"}}': 1000,
        f'llm_prefix_cache_queries_total{{{QWEN},rank="1"}}': 2000,
    }
    assert family(values, "llm_inter_token_latency_seconds_count") == {
        f'llm_inter_token_latency_seconds_count{{{QWEN},rank="0"}}': 3,
        f'llm_inter_token_latency_seconds_count{{{QWEN},rank="1"}}': 6,
    }
    itl_buckets = family(values, "llm_inter_token_latency_seconds_bucket")
    assert len(itl_buckets) == 2 * 20, "one bucket set per rank, not one per upstream name"
    assert values[f'llm_requests_finished_total{{{QWEN},rank="1",reason="stop"}}'] == 12
    assert len(family(values, "llm_engine_info")) == 2


def test_vllm_transition_has_no_per_request_tpot_but_012_does() -> None:
    transition = normalized((ENGINES / "vllm-0.10-transition-dp2.prom").read_text(), "vllm")
    assert not family(transition, "llm_time_per_output_token_seconds_count")
    v012 = normalized((ENGINES / "vllm-0.12-v1-dp2.prom").read_text(), "vllm")
    assert family(v012, "llm_time_per_output_token_seconds_count") == {
        f'llm_time_per_output_token_seconds_count{{{QWEN},rank="0"}}': 2,
        f'llm_time_per_output_token_seconds_count{{{QWEN},rank="1"}}': 4,
    }


def test_vllm_old_name_alone_is_used() -> None:
    page = (
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75\n'
    )
    # Per series: rank 0 only has the old name, rank 1 only the new one.
    assert family(normalized(page, "vllm"), "llm_kv_cache_usage_ratio") == {
        'llm_kv_cache_usage_ratio{engine="vllm",model="m",rank="0"}': 0.5,
        'llm_kv_cache_usage_ratio{engine="vllm",model="m",rank="1"}': 0.75,
    }


TGI = 'engine="tgi",model="mistralai/Mistral-7B-Instruct-v0.2"'


@pytest.mark.parametrize("page", ["tgi-1.0.prom", "tgi-2.0.prom", "tgi-3.x.prom"])
def test_tgi_every_version(page: str) -> None:
    ctx = Context(model="mistralai/Mistral-7B-Instruct-v0.2")
    values = normalized((ENGINES / page).read_text(), "tgi", ctx)
    assert values[f"llm_requests_running{{{TGI}}}"] == 3
    assert values[f"llm_requests_waiting{{{TGI}}}"] == 4
    assert values[f"llm_prompt_tokens_total{{{TGI}}}"] == 2000
    assert values[f"llm_generation_tokens_total{{{TGI}}}"] == 300
    assert values[f"llm_request_duration_seconds_count{{{TGI}}}"] == 7
    assert values[f"llm_request_duration_seconds_sum{{{TGI}}}"] == 20
    assert values[f"llm_request_queue_duration_seconds_sum{{{TGI}}}"] == 2.263
    assert values[f"llm_time_per_output_token_seconds_count{{{TGI}}}"] == 7
    # TGI's boundaries are 0.0001 * 1.5**k in f64, printed as the engine prints them.
    first = repr(0.0001 * 1.5)
    assert first == "0.00015000000000000001"
    assert values[f'llm_request_duration_seconds_bucket{{{TGI},le="{first}"}}'] == 0
    assert values[f'llm_request_duration_seconds_bucket{{{TGI},le="+Inf"}}'] == 7
    assert len(family(values, "llm_request_duration_seconds_bucket")) == 36
    # validation is the client's fault, refused before the queue: not an outcome here.
    assert family(values, "llm_requests_finished_total") == {
        f'llm_requests_finished_total{{{TGI},reason="stop"}}': 7,
        f'llm_requests_finished_total{{{TGI},reason="error"}}': 1,
        f'llm_requests_finished_total{{{TGI},reason="abort"}}': 1,
    }
    # TGI reports neither: absent, never zero.
    assert not family(values, "llm_time_to_first_token_seconds_count")
    assert not family(values, "llm_kv_cache_usage_ratio")
    assert family(values, "llm_engine_info") == {f"llm_engine_info{{{TGI}}}": 1}


def test_tgi_model_from_info_endpoint_and_config() -> None:
    from inferwatch.exporters import tgi

    model, info = tgi.ADAPTER.info_endpoints[0].parse(
        {
            "model_id": "bigscience/bloom-560m",
            "version": "3.3.7",
            "max_total_tokens": 2048,
            "max_concurrent_requests": 128,
            "max_batch_total_tokens": None,
        }
    )
    assert model == "bigscience/bloom-560m"
    assert info == {"version": "3.3.7", "max_model_len": "2048", "max_concurrent_requests": "128"}
    ctx = Context(model=model, info=info)
    values = normalized((ENGINES / "tgi-3.x.prom").read_text(), "tgi", ctx)
    assert family(values, "llm_engine_info") == {
        'llm_engine_info{engine="tgi",model="bigscience/bloom-560m",version="3.3.7",'
        'max_model_len="2048",max_concurrent_requests="128"}': 1
    }


def test_tgi_without_model_says_unknown_and_escapes_a_given_one() -> None:
    page = (ENGINES / "tgi-3.x.prom").read_text()
    assert "llm_queue" not in page
    values = normalized(page, "tgi")
    assert 'llm_requests_waiting{engine="tgi",model="unknown"}' in values
    tricky = normalized(page, "tgi", Context(model='a"b\\c\nd'))
    assert 'llm_requests_waiting{engine="tgi",model="a\\"b\\\\c\\nd"}' in tricky


GPU = (
    'gpu="0",gpu_uuid="GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c",'
    'gpu_model="NVIDIA RTX 4000 Ada Generation"'
)
POD = Context(pod="cuda-75454ffb9f-8ljq7", namespace="default")


def test_dcgm_real_capture_in_base_units() -> None:
    values = normalized(capture("dcgm-exporter-gpu-operator-v25.10.0.prom"), "dcgm", POD)
    assert values == {
        f"llm_gpu_utilization_ratio{{{GPU}}}": 0.0,
        f"llm_gpu_memory_used_bytes{{{GPU}}}": 1 * 1048576,
        f"llm_gpu_memory_free_bytes{{{GPU}}}": 20015 * 1048576,
        f"llm_gpu_power_watts{{{GPU}}}": 40.979,
        f"llm_gpu_temperature_celsius{{{GPU}}}": 48,
        f"llm_gpu_engine_active_ratio{{{GPU}}}": 0.004656,
        f"llm_gpu_tensor_active_ratio{{{GPU}}}": 0.0,
        f"llm_gpu_dram_active_ratio{{{GPU}}}": 0.003074,
        f"llm_gpu_xid_errors{{{GPU}}}": 0,
        f"llm_gpu_energy_joules_total{{{GPU}}}": 455497.156,
    }


def test_dcgm_other_pods_gpus_are_not_ours() -> None:
    text = capture("dcgm-exporter-gpu-operator-v25.10.0.prom")
    assert normalized(text, "dcgm", Context(pod="vllm-0", namespace="default")) == {}
    assert normalized(text, "dcgm", Context(pod="cuda-75454ffb9f-8ljq7", namespace="ml")) == {}


def _dcgm_line(field: str, value: str, **labels: str) -> str:
    base = {"gpu": "0", "UUID": "GPU-1", "modelName": "NVIDIA A100-SXM4-80GB"}
    body = ",".join(f'{k}="{v}"' for k, v in {**base, **labels}.items())
    return f"{field}{{{body}}} {value}\n"


def test_dcgm_old_label_spelling_and_uuid_fallback() -> None:
    old = _dcgm_line("DCGM_FI_DEV_GPU_UTIL", "87", pod_name="p", pod_namespace="ns")
    a100 = 'gpu_uuid="GPU-1",gpu_model="NVIDIA A100-SXM4-80GB"'
    assert normalized(old, "dcgm", Context(pod="p", namespace="ns")) == {
        f'llm_gpu_utilization_ratio{{gpu="0",{a100}}}': 0.87
    }
    no_mapping = _dcgm_line("DCGM_FI_DEV_GPU_UTIL", "50") + _dcgm_line(
        "DCGM_FI_DEV_GPU_UTIL", "10", gpu="1", UUID="GPU-2"
    )
    ours = normalized(no_mapping, "dcgm", Context(pod="p", gpu_uuids=frozenset({"GPU-2"})))
    assert list(ours) == [
        'llm_gpu_utilization_ratio{gpu="1",gpu_uuid="GPU-2",gpu_model="NVIDIA A100-SXM4-80GB"}'
    ]
    # In a pod with neither mapping nor UUIDs we cannot tell: keep nothing rather than guess.
    assert normalized(no_mapping, "dcgm", Context(pod="p")) == {}


def test_dcgm_mig_falls_back_to_engine_activity_and_keeps_instances_apart() -> None:
    page = _dcgm_line(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.25", GPU_I_ID="1", GPU_I_PROFILE="1g.10gb"
    )
    page += _dcgm_line(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.5", GPU_I_ID="2", GPU_I_PROFILE="1g.10gb"
    )
    values = normalized(page, "dcgm")
    common = 'gpu="0",gpu_uuid="GPU-1",gpu_model="NVIDIA A100-SXM4-80GB"'
    assert family(values, "llm_gpu_utilization_ratio") == {
        f'llm_gpu_utilization_ratio{{{common},gpu_instance="1"}}': 0.25,
        f'llm_gpu_utilization_ratio{{{common},gpu_instance="2"}}': 0.5,
    }


@pytest.mark.parametrize(
    "sentinel", ["9223372036854775794", "2147483632", "2147483634", "140737488355328"]
)
def test_dcgm_sentinels_are_dropped(sentinel: str) -> None:
    page = _dcgm_line("DCGM_FI_DEV_GPU_TEMP", sentinel) + _dcgm_line(
        "DCGM_FI_DEV_POWER_USAGE", "300"
    )
    values = normalized(page, "dcgm")
    assert not family(values, "llm_gpu_temperature_celsius")
    assert len(family(values, "llm_gpu_power_watts")) == 1


def test_dcgm_large_energy_counter_is_not_a_sentinel() -> None:
    page = _dcgm_line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "1300000000000")
    assert list(normalized(page, "dcgm").values()) == [1.3e9]


@pytest.mark.parametrize(
    ("name", "engine"),
    [
        ("vllm-0.32.0-cpu-tiny-real.prom", "vllm"),
        ("vllm-v0-0.6.x-idle.prom", "vllm"),
    ],
)
def test_detection_on_captures(name: str, engine: str) -> None:
    assert registry.detect(capture(name)).name == engine


@pytest.mark.parametrize("page", ["tgi-1.0.prom", "tgi-2.0.prom", "tgi-3.x.prom"])
def test_detection_on_tgi_pages(page: str) -> None:
    assert registry.detect((ENGINES / page).read_text()).name == "tgi"


def test_detection_explains_what_it_saw() -> None:
    with pytest.raises(registry.DetectionError, match="dcgm-exporter page"):
        registry.detect(capture("dcgm-exporter-gpu-operator-v25.10.0.prom"))
    with pytest.raises(registry.DetectionError, match=r"no engine recognised.*node_cpu"):
        registry.detect("# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total 1\n")
    with pytest.raises(registry.DetectionError, match="no metric names at all"):
        registry.detect("<html>502 Bad Gateway</html>")
