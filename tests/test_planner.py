"""The capacity planner: the seed's VRAM table, KV-cache arithmetic, config.json parsing,
the JSON contract and the CLI's errors (run through the real console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inferwatch.slo.catalog import (
    GIB,
    GPUS,
    KNOWN_MODELS,
    PlannerError,
    architecture_from_config,
    find_gpu,
    find_model,
    methods,
)
from inferwatch.slo.cli import parse_count
from inferwatch.slo.planner import Plan, kv_cache_bytes_per_token, plan, render_text

# --- the seed's table: "模型显存需求估算" in shared/seed/llm-inference-deployment.md ----------

# size in billions -> (FP16, INT8, INT4) GB and the recommended GPUs, as the seed states them.
SEED_TABLE = {
    7: ((14, 7, 4), {("a10", 1), ("l4", 1)}),
    13: ((26, 13, 7), {("a100-40g", 1)}),
    34: ((68, 34, 17), {("a100-80g", 1)}),
    70: ((140, 70, 35), {("a100-80g", 2)}),
    120: ((240, 120, 60), {("a100-80g", 4)}),
}
# A published model of each size, to check the table with real architectures too.
SEED_MODELS = {
    7: "llama-2-7b",
    13: "llama-2-13b",
    34: "codellama-34b",
    70: "llama-2-70b",
    120: "mistral-large-2407",
}
CELLS = [
    (size, dtype, gb)
    for size, (gbs, _) in SEED_TABLE.items()
    for dtype, gb in zip(("fp16", "int8", "int4"), gbs, strict=True)
]


@pytest.mark.parametrize(("size", "dtype", "gb"), CELLS)
def test_weights_reproduce_every_cell_of_the_seed_table_from_the_parameter_count(
    size: int, dtype: str, gb: int
) -> None:
    weights = plan(params=size * 1e9, dtype=dtype).weights_bytes
    assert weights == pytest.approx(gb * 1e9, rel=0.10)


@pytest.mark.parametrize(("size", "dtype", "gb"), CELLS)
def test_weights_reproduce_every_cell_of_the_seed_table_for_a_real_model_of_that_size(
    size: int, dtype: str, gb: int
) -> None:
    weights = plan(model=SEED_MODELS[size], dtype=dtype).weights_bytes
    assert weights == pytest.approx(gb * 1e9, rel=0.10)


@pytest.mark.parametrize("size", SEED_TABLE)
def test_recommended_gpu_reproduces_the_seed_column(size: int) -> None:
    expected = SEED_TABLE[size][1]
    by_params = plan(params=size * 1e9)
    by_model = plan(model=SEED_MODELS[size])
    assert (by_params.gpu, by_params.gpu_count) in expected
    assert (by_model.gpu, by_model.gpu_count) in expected
    assert by_model.tensor_parallel_size == by_model.gpu_count


def test_the_plan_says_the_seed_figures_are_weights_only() -> None:
    p = plan(params=7e9)
    assert any("weights alone" in note and "seed" in note for note in p.notes)
    report = render_text(p)
    assert "Weights (what the seed's VRAM table lists)" in report
    # and the GPU needs more than the weights: overhead is counted per GPU
    assert p.per_gpu.weights_bytes + p.per_gpu.runtime_overhead_bytes < p.per_gpu.usable_bytes


# --- KV cache per token, by hand: 2 x layers x KV heads x head dim x 2 bytes --------------

KV_BY_HAND = {
    "llama-2-7b": 2 * 32 * 32 * 128 * 2,  # 524,288: no GQA
    "llama-3-8b": 2 * 32 * 8 * 128 * 2,  # 131,072
    "llama-3.1-70b": 2 * 80 * 8 * 128 * 2,  # 327,680
    "llama-3.1-405b": 2 * 126 * 8 * 128 * 2,  # 516,096
    "mistral-7b": 2 * 32 * 8 * 128 * 2,
    "mixtral-8x7b": 2 * 32 * 8 * 128 * 2,  # experts do not change the cache
    "qwen2.5-7b": 2 * 28 * 4 * 128 * 2,  # 57,344
    "qwen2.5-72b": 2 * 80 * 8 * 128 * 2,
    "gemma-2-9b": 2 * 42 * 8 * 256 * 2,  # head_dim 256, not 3584 / 16
    "gemma-2-27b": 2 * 46 * 16 * 128 * 2,  # head_dim 128, not 4608 / 32
    "phi-3-mini": 2 * 32 * 32 * 96 * 2,
    "phi-3-medium": 2 * 40 * 10 * 128 * 2,
}


@pytest.mark.parametrize(("name", "expected"), KV_BY_HAND.items())
def test_kv_cache_per_token_matches_the_hand_computed_value(name: str, expected: int) -> None:
    arch = KNOWN_MODELS[name]
    assert kv_cache_bytes_per_token(arch) == expected
    assert kv_cache_bytes_per_token(arch, "fp8") == expected // 2
    assert plan(model=name, gpu="h200").kv_cache_bytes_per_token == expected


# Parameter counts the model cards publish; the table's shapes must imply them.
PUBLISHED_PARAMS = {
    "llama-2-7b": 6.74e9,
    "llama-2-13b": 13.0e9,
    "llama-2-70b": 69.0e9,
    "codellama-34b": 33.7e9,
    "llama-3-8b": 8.03e9,
    "llama-3.1-70b": 70.6e9,
    "llama-3.1-405b": 406e9,
    "mistral-7b": 7.25e9,
    "mixtral-8x7b": 46.7e9,
    "mistral-large-2407": 123e9,
    "qwen2.5-7b": 7.62e9,
    "qwen2.5-14b": 14.8e9,
    "qwen2.5-32b": 32.8e9,
    "qwen2.5-72b": 72.7e9,
    "gemma-2-2b": 2.61e9,
    "gemma-2-9b": 9.24e9,
    "gemma-2-27b": 27.2e9,
    "phi-3-mini": 3.82e9,
    "phi-3-medium": 14.0e9,
}


def test_every_known_model_has_a_published_count() -> None:
    assert set(PUBLISHED_PARAMS) <= set(KNOWN_MODELS)
    assert len(KNOWN_MODELS) - len(PUBLISHED_PARAMS) <= 2  # only Llama 3/3.1 twins omitted


@pytest.mark.parametrize(("name", "published"), PUBLISHED_PARAMS.items())
def test_parameter_count_derived_from_the_architecture_matches_the_model_card(
    name: str, published: float
) -> None:
    assert KNOWN_MODELS[name].params == pytest.approx(published, rel=0.01)


# --- the memory arithmetic against vLLM's own start-up profile ------------------------------


def test_llama3_8b_on_h100_matches_vllms_logged_memory_profile() -> None:
    """vLLM PR #10511 logs for `vllm serve meta-llama/Meta-Llama-3-8B` on an H100 at 0.90:
    weights 14.96 GiB, non-torch 1.79 GiB, activation peak 1.26 GiB, KV cache 53.29 GiB."""
    p = plan(model="llama-3-8b", gpu="h100-80g")
    assert p.per_gpu.weights_bytes / GIB == pytest.approx(14.96, rel=0.01)
    assert p.per_gpu.activation_bytes / GIB == pytest.approx(1.26, rel=0.15)
    assert p.per_gpu.kv_cache_bytes / GIB == pytest.approx(53.29, rel=0.03)


def test_gpu_memory_utilization_scales_the_usable_memory_and_the_kv_cache() -> None:
    full = plan(model="llama-3-8b", gpu="a100-80g", gpu_memory_utilization=0.9)
    lower = plan(model="llama-3-8b", gpu="a100-80g", gpu_memory_utilization=0.5)
    assert full.per_gpu.usable_bytes == int(81920 * 1024**2 * 0.9)
    assert lower.per_gpu.usable_bytes == int(81920 * 1024**2 * 0.5)
    assert lower.kv_cache_tokens < full.kv_cache_tokens
    assert "--gpu-memory-utilization=0.5" in lower.vllm_args


def test_fp8_kv_cache_holds_about_twice_the_tokens() -> None:
    fp16 = plan(model="llama-3.1-8b", gpu="h100-80g")
    fp8 = plan(model="llama-3.1-8b", gpu="h100-80g", kv_cache_dtype="fp8")
    assert fp8.kv_cache_tokens / fp16.kv_cache_tokens == pytest.approx(2, rel=0.01)
    assert "--kv-cache-dtype=fp8" in fp8.vllm_args


def test_max_num_seqs_and_largest_max_model_len_follow_from_the_kv_tokens() -> None:
    p = plan(model="llama-3-8b", gpu="l4", max_model_len=4096)
    assert p.kv_cache_tokens % 16 == 0
    assert p.max_num_seqs == p.kv_cache_tokens // 4096
    assert p.largest_max_model_len == min(p.kv_cache_tokens, 8192)
    assert "--max-model-len=4096" in p.vllm_args
    assert f"--max-num-seqs={min(p.max_num_seqs, 256)}" in p.vllm_args


def test_max_num_seqs_flag_is_capped_at_vllms_default_and_says_why() -> None:
    p = plan(model="qwen2.5-7b", gpu="h200", max_model_len=1024)
    assert p.max_num_seqs > 256
    assert "--max-num-seqs=256" in p.vllm_args
    assert any("--max-num-seqs stays at 256" in note for note in p.notes)


def test_model_context_longer_than_the_cache_takes_more_gpus_than_a_short_one() -> None:
    full = plan(model="llama-3.1-70b")  # 131,072 tokens by default, as vLLM does
    short = plan(model="llama-3.1-70b", max_model_len=8192)
    assert full.max_model_len == 131072
    assert full.gpu_count > short.gpu_count


def test_concurrency_is_a_requirement_on_the_kv_cache() -> None:
    one = plan(model="llama-2-13b", gpu="a100-80g")
    many = plan(model="llama-2-13b", gpu="a100-80g", concurrency=64)
    assert one.gpu_count == 1
    assert many.gpu_count > 1
    assert many.max_num_seqs >= 64


# --- tensor parallelism, pipeline parallelism, nodes ----------------------------------------


def test_every_planned_tensor_parallel_size_divides_the_heads_and_suits_the_kv_heads() -> None:
    for name, arch in KNOWN_MODELS.items():
        for option in plan(model=name, gpu="h200").options:
            if option.fits:
                tp = option.tensor_parallel_size
                assert tp in (1, 2, 4, 8), (name, option)
                assert arch.num_attention_heads % tp == 0, (name, option)
                assert arch.num_kv_heads % tp == 0 or tp % arch.num_kv_heads == 0


def test_pipeline_parallel_steps_in_when_the_heads_limit_tensor_parallel() -> None:
    # Phi-3-medium: 40 heads and 10 KV heads allow TP 1 or 2 only.
    p = plan(model="phi-3-medium", gpu="a10", concurrency=12)
    assert p.tensor_parallel_size == 2
    assert p.pipeline_parallel_size > 1
    assert p.nodes == 1
    assert any("tensor parallel" in note for note in p.notes)


def test_gpu_counts_beyond_one_node_are_flagged() -> None:
    p = plan(model="llama-3.1-405b", gpu="a100-80g")
    assert p.gpu_count > 8
    assert p.nodes == -(-p.gpu_count // 8)
    assert p.tensor_parallel_size == 8
    assert f"--pipeline-parallel-size={p.pipeline_parallel_size}" in p.vllm_args
    assert any("span" in note and "nodes" in note for note in p.notes)


def test_a_model_too_big_for_eight_of_the_largest_gpu_is_refused_with_a_way_out() -> None:
    with pytest.raises(PlannerError) as err:
        plan(params=2e12, dtype="fp16")
    message = str(err.value)
    assert "does not fit on 8 of any GPU" in message
    assert "8 x h200" in message
    assert "int4 fits on" in message
    assert "\n" not in message


def test_the_automatic_choice_stays_within_one_node() -> None:
    p = plan(model="llama-3.1-405b")
    assert p.gpu_count <= 8 and p.nodes == 1
    assert (p.gpu, p.gpu_count) == ("h200", 8)


# --- weight formats, GPUs and engines --------------------------------------------------------


def test_automatic_fp8_plans_only_on_gpus_with_fp8_tensor_cores() -> None:
    for size in (7e9, 13e9, 70e9):
        p = plan(params=size, dtype="fp8")
        assert GPUS[p.gpu].fp8, p.gpu
    assert not GPUS["a100-80g"].fp8 and not GPUS["a10"].fp8
    assert GPUS["l4"].fp8 and GPUS["l40s"].fp8 and GPUS["h100-80g"].fp8


def test_fp8_on_an_ampere_gpu_is_planned_as_weight_only_and_says_so() -> None:
    p = plan(params=13e9, dtype="fp8", gpu="a100-40g")
    assert any("weight-only" in note and "Marlin" in note for note in p.notes)
    assert "--quantization=fp8" in p.vllm_args


def test_quantization_advice_matches_the_seed_and_the_engines_documentation() -> None:
    # The seed's framework table: vLLM AWQ/GPTQ/FP8, TGI GPTQ/bitsandbytes, TensorRT-LLM
    # INT8/FP8, llama.cpp and Ollama GGUF, SGLang AWQ/GPTQ.
    assert {"AWQ", "GPTQ"} <= set(methods("int4", "vllm")["vllm"])
    assert methods("fp8", "vllm")["vllm"]
    assert "GPTQ" in methods("int4", "tgi")["tgi"]
    assert any("bitsandbytes" in m for m in methods("int8", "tgi")["tgi"])
    assert methods("int8", "trtllm")["trtllm"] and methods("fp8", "trtllm")["trtllm"]
    assert {"AWQ", "GPTQ"} <= set(methods("int4", "sglang")["sglang"])
    for engine in ("llamacpp", "ollama"):
        for dtype in ("int8", "int4"):
            assert all("GGUF" in m for m in methods(dtype, engine)[engine])
        assert methods("fp8", engine) == {}


def test_an_engine_without_the_format_is_refused_and_told_what_it_offers() -> None:
    with pytest.raises(PlannerError, match=r"--engine ollama has no fp8 format.*int4"):
        plan(params=7e9, dtype="fp8", engine="ollama")


def test_the_engine_restricts_the_advice_and_sets_the_gguf_size() -> None:
    p = plan(params=7e9, dtype="int4", engine="llamacpp")
    assert all(set(q.methods) == {"llamacpp"} for q in p.quantization)
    assert p.weights_bytes == pytest.approx(7e9 * 4.84 / 8, rel=0.001)
    assert plan(params=7e9, dtype="int4").weights_bytes < p.weights_bytes


def test_quantization_options_shrink_the_deployment() -> None:
    p = plan(model="llama-2-70b")
    by_dtype = {q.dtype: q for q in p.quantization}
    assert by_dtype["fp16"].gpu_count == p.gpu_count == 2
    assert by_dtype["int4"].gpu_count == 1
    assert by_dtype["int4"].weights_bytes < by_dtype["int8"].weights_bytes < p.weights_bytes


def test_dtype_aliases_are_accepted() -> None:
    assert plan(params=7e9, dtype="AWQ").dtype == "int4"
    assert plan(params=7e9, dtype="bfloat16").dtype == "bf16"
    assert "--dtype=bfloat16" in plan(params=7e9, dtype="bf16").vllm_args


@pytest.mark.parametrize(
    ("name", "key"),
    [("A100-80GB", "a100-80g"), ("nvidia h100", "h100-80g"), ("H200", "h200"), ("a10g", "a10")],
)
def test_gpu_names_are_recognised_in_their_usual_spellings(name: str, key: str) -> None:
    assert find_gpu(name).key == key


def test_unknown_and_ambiguous_gpus_list_the_known_ones() -> None:
    with pytest.raises(PlannerError, match=r"unknown GPU 'v100'; known GPUs: a10, l4"):
        find_gpu("v100")
    with pytest.raises(PlannerError, match="a100-40g or a100-80g"):
        find_gpu("A100")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Meta-Llama-3-8B-Instruct", "llama-3-8b"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
        ("google/gemma-2-9b-it", "gemma-2-9b"),
        ("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini"),
    ],
)
def test_models_are_found_by_hugging_face_id(name: str, key: str) -> None:
    assert find_model(name).name == key


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(PlannerError, match=r"unknown model 'llama-9-1b'; known models: .*qwen"):
        plan(model="llama-9-1b")


# --- config.json -----------------------------------------------------------------------------

# meta-llama/Meta-Llama-3-8B-Instruct's config.json, as published.
LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}
GEMMA2_9B_CONFIG = {
    "model_type": "gemma2",
    "hidden_size": 3584,
    "head_dim": 256,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "num_attention_heads": 16,
    "num_hidden_layers": 42,
    "num_key_value_heads": 8,
    "sliding_window": 4096,
    "vocab_size": 256000,
    "tie_word_embeddings": True,
}


def test_config_json_gives_the_same_architecture_as_the_table() -> None:
    arch = architecture_from_config(LLAMA3_8B_CONFIG)
    known = KNOWN_MODELS["llama-3-8b"]
    fields = ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
              "intermediate_size", "vocab_size", "max_position_embeddings", "params")  # fmt: skip
    assert {f: getattr(arch, f) for f in fields} == {f: getattr(known, f) for f in fields}
    by_config = plan(config=LLAMA3_8B_CONFIG, gpu="l4")
    by_name = plan(model="llama-3-8b", gpu="l4")
    assert by_config.kv_cache_tokens == by_name.kv_cache_tokens
    assert by_config.weights_bytes == by_name.weights_bytes


def test_config_json_head_dim_is_read_when_present() -> None:
    arch = architecture_from_config(GEMMA2_9B_CONFIG)
    assert arch.head_dim == 256  # hidden_size / heads would say 224
    assert kv_cache_bytes_per_token(arch) == KV_BY_HAND["gemma-2-9b"]
    assert arch.params == pytest.approx(9.24e9, rel=0.01)


def test_config_json_without_num_key_value_heads_is_full_multi_head_attention() -> None:
    cfg = {k: v for k, v in LLAMA3_8B_CONFIG.items() if k != "num_key_value_heads"}
    assert architecture_from_config(cfg).num_kv_heads == 32


def test_config_json_of_a_multimodal_model_reads_its_text_config() -> None:
    cfg = {"model_type": "llava", "vision_config": {"hidden_size": 1024},
           "text_config": dict(LLAMA3_8B_CONFIG)}  # fmt: skip
    assert architecture_from_config(cfg).num_kv_heads == 8


def test_config_json_of_a_mixture_of_experts_counts_every_expert() -> None:
    cfg = dict(LLAMA3_8B_CONFIG, num_local_experts=8, num_experts_per_tok=2, vocab_size=32000,
               max_position_embeddings=32768)  # fmt: skip
    arch = architecture_from_config(cfg)
    assert arch.num_experts == 8 and arch.experts_per_token == 2
    assert arch.params == pytest.approx(46.7e9, rel=0.01)  # Mixtral 8x7B's shape


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_hidden_layers": None}, "missing field 'num_hidden_layers'"),
        ({"num_key_value_heads": "eight"}, "field 'num_key_value_heads' must be a positive"),
        ({"hidden_size": -1}, "field 'hidden_size' must be a positive integer, got -1"),
        ({"num_key_value_heads": 5}, "not a multiple of num_key_value_heads (5)"),
        ({"hidden_size": 4100}, "missing field 'head_dim'"),
        ({"kv_lora_rank": 512}, "field 'kv_lora_rank' means multi-head latent attention"),
        ({"tie_word_embeddings": "no"}, "field 'tie_word_embeddings' must be true or false"),
        ({"num_local_experts": 64, "moe_intermediate_size": 1408}, "moe_intermediate_size"),
    ],
)
def test_malformed_config_json_names_the_field(change: dict, message: str) -> None:
    cfg = {k: v for k, v in {**LLAMA3_8B_CONFIG, **change}.items() if v is not None}
    with pytest.raises(PlannerError) as err:
        architecture_from_config(cfg)
    assert message in str(err.value)
    assert str(err.value).startswith("config.json: ")


def test_config_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(PlannerError, match="expected a JSON object, got list"):
        architecture_from_config([1, 2])


def test_config_json_without_a_context_length_needs_max_model_len() -> None:
    cfg = {k: v for k, v in LLAMA3_8B_CONFIG.items() if k != "max_position_embeddings"}
    with pytest.raises(PlannerError, match="give --max-model-len"):
        plan(config=cfg)
    assert plan(config=cfg, max_model_len=4096).max_model_len == 4096


def test_max_model_len_beyond_the_models_context_is_refused() -> None:
    with pytest.raises(PlannerError, match=r"longer than the model's context \(8,192"):
        plan(model="llama-3-8b", max_model_len=100_000)


# --- the JSON contract -----------------------------------------------------------------------

REQUIRED = {"weights_bytes", "kv_cache_bytes_per_token", "gpu", "gpu_count",
            "tensor_parallel_size"}  # fmt: skip


@pytest.mark.parametrize(
    "kwargs", [{"params": 70e9}, {"model": "llama-3.1-8b"}, {"config": LLAMA3_8B_CONFIG}]
)
def test_json_has_a_stable_field_set_and_round_trips(kwargs: dict) -> None:
    p = plan(**kwargs)
    data = json.loads(p.model_dump_json())
    assert set(data) == set(Plan.model_fields)
    assert set(data) >= REQUIRED
    assert Plan.model_validate_json(p.model_dump_json()) == p


# --- the command line (the installed console script, as a user runs it) ----------------------


def _inferwatch(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("inferwatch")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", _MAIN]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)


_MAIN = "from inferwatch.cli import main; main()"


def test_cli_json_prints_the_documented_fields() -> None:
    run = _inferwatch("plan", "--params", "70e9", "--dtype", "fp16", "--model", "llama-2-70b",
                      "--gpu", "a100-80g", "--max-model-len", "4096", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["weights_bytes"] == 140_000_000_000
    assert data["kv_cache_bytes_per_token"] == 2 * 80 * 8 * 128 * 2
    assert (data["gpu"], data["gpu_count"], data["tensor_parallel_size"]) == ("a100-80g", 2, 2)
    assert data["max_model_len"] == 4096


def test_cli_text_report_shows_the_arithmetic() -> None:
    run = _inferwatch("plan", "--model", "llama-3-8b", "--gpu", "l4")
    assert run.returncode == 0, run.stderr
    assert "2 (K, V) x 32 layers x 8 KV heads x 128 head dim x 2 B = 131,072 B" in run.stdout
    assert "(--gpu-memory-utilization)" in run.stdout
    assert "--tensor-parallel-size=1" in run.stdout


def test_cli_reads_a_config_json_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA3_8B_CONFIG))
    run = _inferwatch("plan", "--config", str(path), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["kv_cache_bytes_per_token"] == 131072


def test_cli_lists_known_models_and_gpus() -> None:
    models = _inferwatch("plan", "--list-models")
    gpus = _inferwatch("plan", "--list-gpus")
    assert models.returncode == gpus.returncode == 0
    assert all(name in models.stdout for name in KNOWN_MODELS)
    assert all(key in gpus.stdout for key in GPUS)


def _bad_config(tmp_path: Path) -> str:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({**LLAMA3_8B_CONFIG, "num_attention_heads": "32"}))
    return str(path)


def _not_json(tmp_path: Path) -> str:
    path = tmp_path / "garbage.json"
    path.write_text('{"hidden_size": 4096,')
    return str(path)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--params", "7e9", "--gpu", "v100"], "unknown GPU 'v100'; known GPUs: a10, l4"),
        (["--model", "gpt-5"], "unknown model 'gpt-5'; known models: llama-2-7b"),
        (["--params", "seventy"], "--params 'seventy': expected a count like 70e9"),
        (["--params", "2e12"], "does not fit on 8 of any GPU (8 x h200 is the largest)"),
        (["--params", "7e9", "--dtype", "int3"], "--dtype 'int3': Input should be"),
        (["--params", "7e9", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--params", "7e9", "--model", "llama-2-7b", "--config", "x.json"], "cannot read"),
        (["--model", "llama-3-8b", "--max-model-len", "999999"], "longer than the model's"),
        (["--params", "7e9", "--engine", "llamacpp", "--dtype", "fp8"], "has no fp8 format"),
        (["--dtype", "fp16"], "give --params (e.g. 70e9), --model NAME or --config"),
        (["--config", "BAD"], "broken.json: field 'num_attention_heads' must be a positive"),
        (["--config", "NOTJSON"], "garbage.json: not valid JSON (line 1"),
        (["--config", "ARRAY"], "array.json: expected a JSON object, got list"),
    ],
)
def test_cli_errors_exit_2_with_one_line_and_no_traceback(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    (tmp_path / "array.json").write_text("[1, 2, 3]")
    files = {"BAD": _bad_config(tmp_path), "NOTJSON": _not_json(tmp_path),
             "ARRAY": str(tmp_path / "array.json")}  # fmt: skip
    args = [files.get(a, a) for a in args]
    run = _inferwatch("plan", *args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("inferwatch plan: ")
    assert expected in run.stderr


def test_inputs_that_need_an_architecture_are_reported_as_unused() -> None:
    p = plan(params=7e9, max_model_len=4096, concurrency=4)
    assert p.max_model_len is None and p.max_num_seqs is None
    assert any("--max-model-len, --concurrency need the architecture" in n for n in p.notes)
    assert not any(a.startswith("--max-model-len") for a in p.vllm_args)


@pytest.mark.parametrize(
    ("text", "value"),
    [("70e9", 70e9), ("70B", 70e9), ("7.6b", 7.6e9), ("1.5T", 1.5e12), ("405000000000", 405e9),
     ("500M", 5e8)],
)  # fmt: skip
def test_parameter_counts_are_read_in_the_usual_notations(text: str, value: float) -> None:
    assert parse_count(text) == pytest.approx(value)


def test_a_parameter_count_under_a_million_is_refused_as_a_likely_typo() -> None:
    with pytest.raises(PlannerError, match="write the count in full"):
        plan(params=70)


# --- the documentation states the catalog's numbers, not its own ------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "planner.md"


def test_docs_list_every_known_model_with_the_catalogs_numbers() -> None:
    text = DOCS.read_text()
    for a in KNOWN_MODELS.values():
        kib = kv_cache_bytes_per_token(a) // 1024
        row = (
            f"| {a.name} | {a.hf_id} | {a.params / 1e9:.2f}B | {a.num_layers} | "
            f"{a.num_attention_heads} | {a.num_kv_heads} | {a.head_dim} | "
            f"{a.max_position_embeddings} | {kib} KiB |"
        )
        assert row in text, row


def test_docs_list_every_gpu_with_the_catalogs_numbers() -> None:
    text = DOCS.read_text()
    for g in GPUS.values():
        row = (
            f"| `{g.key}` {g.name} | {g.memory_mib} MiB | {g.generation} | "
            f"{g.compute_capability} | {'yes' if g.fp8 else 'no'} |"
        )
        assert row in text, row


def test_docs_seed_comparison_states_what_the_planner_computes() -> None:
    text = DOCS.read_text()
    for size, (gbs, _) in SEED_TABLE.items():
        by_params = " / ".join(
            f"{plan(params=size * 1e9, dtype=d).weights_bytes / 1e9:.1f}"
            for d in ("fp16", "int8", "int4")
        )
        name = SEED_MODELS[size]
        by_model = " / ".join(
            f"{plan(model=name, dtype=d).weights_bytes / 1e9:.1f}" for d in ("fp16", "int8", "int4")
        )
        chosen = plan(params=size * 1e9)
        row_end = f"| {chosen.gpu_count} x {chosen.gpu} |"
        line = next(line for line in text.splitlines() if line.startswith(f"| {size}B"))
        assert f"| {by_params} | {name}: {by_model} |" in line, line
        assert " / ".join(str(gb) for gb in gbs) + " GB" in line
        assert line.endswith(row_end), line
