"""The advisor's rules as pure functions: figures in, recommendations out, for vLLM (V1 and V0),
SGLang and TGI, healthy and too-little-data cases, and the HPA arithmetic."""

from __future__ import annotations

import math

import pytest

from inferwatch.exporters import buckets as engine_buckets
from inferwatch.slo import queries
from inferwatch.slo.advisor import advise
from inferwatch.slo.figures import Figures, Headline, Point, Stat, Target
from inferwatch.slo.flags import read_flags
from inferwatch.slo.kube import DeploymentSpec
from inferwatch.slo.models import Advice, Recommendation
from inferwatch.slo.objectives import AvailabilityObjective, LatencyObjective
from inferwatch.slo.rule_inputs import Inputs
from inferwatch.slo.rules_hpa import fit_relation, queue_target, scaling_behavior

GIB = 1024**3
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TTFT_1S = LatencyObjective("chat-ttft", "ttft", 0.99, 1.0)
TPOT_100MS = LatencyObjective("chat-tpot", "tpot", 0.99, 0.1)


def hist(engine: str, name: str, total: float, shares: dict[float, float]) -> list:
    """Bucket increases: `shares` maps boundaries to the cumulative share under them."""
    bounds = engine_buckets.boundaries(engine, queries.HISTOGRAMS[name]) or tuple(sorted(shares))
    out = [
        (le, total * max((s for b, s in shares.items() if b <= le), default=0.0)) for le in bounds
    ]
    return [*out, (math.inf, total)]


def figures(
    engine: str = "vllm",
    *,
    requests: float = 3000,
    gauges: dict[str, float] | None = None,
    counters: dict[str, float] | None = None,
    info: dict[str, str] | None = None,
    ttft: dict[float, float] | None = None,
    tpot: dict[float, float] | None = None,
    queue: dict[float, float] | None = None,
    errors: float = 0,
    points: int = 60,
    source: str = "upstream",
) -> Figures:
    fig = Figures(
        target=Target("llm", "chat", engine, MODEL),
        source=source,  # type: ignore[arg-type]
        window="10m",
        step="10s",
        origin="http://engine:8000/metrics",
        finished={"stop": requests - errors, "error": errors},
        counters={"prompt_tokens": 500 * requests, "generation_tokens": 200 * requests}
        | (counters or {}),
        info={"engine": engine, "model": MODEL, **(info or {})},
        gpu_model="NVIDIA L4",
        gpu_total_bytes=24 * GIB,
        points=points,
    )
    for name, value in (gauges or {}).items():
        fig.gauges[name] = Stat.of([value] * points)  # type: ignore[assignment]
    for name, dist in (("ttft", ttft), ("tpot", tpot), ("queue", queue)):
        if dist is not None:
            fig.buckets[name] = hist(engine, name, requests, dist)
    return fig


FAST_TTFT = {0.1: 0.5, 0.25: 1.0}
SLOW_TTFT = {1.0: 0.5, 2.5: 0.9, 5.0: 1.0}
FAST_TPOT = {0.025: 0.9, 0.05: 1.0}
SLOW_TPOT = {0.1: 0.5, 0.2: 0.95, 0.3: 1.0}
THRASHING = {"kv_cache_usage": 0.97, "requests_running": 60, "requests_waiting": 0.5}


def run(fig: Figures, latency=(TTFT_1S, TPOT_100MS), **kw) -> Advice:
    return advise(Inputs(figures=fig, latency=tuple(latency), **kw))


def only(a: Advice, parameter: str) -> Recommendation:
    found = [r for r in a.recommendations if r.parameter == parameter]
    assert len(found) == 1, (parameter, [r.parameter for r in a.recommendations], a.missing)
    return found[0]


def params(a: Advice) -> set[str]:
    return {r.parameter for r in a.recommendations}


# ---- healthy, and too little data -----------------------------------------------------------


def test_a_healthy_engine_gets_no_recommendation() -> None:
    a = run(
        figures(
            gauges={"kv_cache_usage": 0.4, "requests_running": 20, "requests_waiting": 0},
            counters={"preemptions": 0},
            ttft=FAST_TTFT,
            tpot=FAST_TPOT,
        ),
        availability=(AvailabilityObjective("chat-availability", 0.999, ("abort", "error")),),
    )
    assert (a.status, a.recommendations, a.missing) == ("healthy", [], [])
    assert all(c.met for c in a.objectives)
    assert "nothing to change" in a.summary


def test_too_few_requests_is_said_not_judged() -> None:
    a = run(figures(requests=12, gauges={"kv_cache_usage": 0.4}, ttft=FAST_TTFT, tpot=FAST_TPOT))
    assert a.status == "insufficient-data"
    assert a.recommendations == []
    assert any("only 12 requests finished" in m for m in a.missing)


def test_too_few_readings_stop_every_rule() -> None:
    a = run(figures(points=2, gauges=THRASHING, counters={"preemptions": 500}, ttft=FAST_TTFT))
    assert a.status == "insufficient-data"
    assert a.recommendations == []
    assert any("only 2 readings" in m for m in a.missing)


def test_a_missed_objective_without_a_visible_cause_asks_for_attention() -> None:
    a = run(
        figures(
            gauges={"kv_cache_usage": 0.5, "requests_waiting": 0}, ttft=SLOW_TTFT, tpot=FAST_TPOT
        )
    )
    assert a.status == "needs-attention"
    assert "none of the advisor's rules finds the cause" in a.summary


# ---- vLLM -----------------------------------------------------------------------------------


def test_thrashing_with_free_memory_raises_gpu_memory_utilization() -> None:
    fig = figures(
        gauges={
            **THRASHING,
            "gpu_memory_free_ratio": 0.12,
            "gpu_memory_free_bytes": 0.12 * 24 * GIB,
        },
        counters={"preemptions": 300},
        info={"gpu_memory_utilization": "0.85", "kv_cache_tokens": "100000"},
        ttft=FAST_TTFT,
    )
    r = only(run(fig), "--gpu-memory-utilization")
    assert (r.current, r.proposed, r.direction, r.confidence) == (0.85, 0.95, "raise", "high")
    # 0.85 + 0.12 - 0.02 = 0.95; 10% of 24 GiB at Llama-3.1-8B's 128 KiB per token.
    assert "2.4 GiB" in r.expected_effect
    assert (
        "19,661 tokens" in r.expected_effect and "+20% of its 100,000 tokens" in r.expected_effect
    )
    assert r.patch.json_patch == [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-",
         "value": "--gpu-memory-utilization=0.95"},
    ]  # fmt: skip
    assert "kubectl -n llm patch deployment chat --type=json" in r.patch.kubectl["json-patch"]


def test_thrashing_stays_below_the_memory_ceiling_and_margin() -> None:
    fig = figures(
        gauges={**THRASHING, "gpu_memory_free_ratio": 0.05, "gpu_memory_free_bytes": 1.2 * GIB},
        counters={"preemptions": 300},
        info={"gpu_memory_utilization": "0.9"},
        ttft=FAST_TTFT,
    )
    r = only(run(fig), "--gpu-memory-utilization")
    assert r.proposed == 0.93  # 0.9 + 0.05 - 0.02


def test_thrashing_without_gpu_figures_lowers_max_num_seqs_and_says_why() -> None:
    fig = figures(gauges=THRASHING, counters={"preemptions": 300}, ttft=FAST_TTFT)
    a = run(fig)
    r = only(a, "--max-num-seqs")
    assert (r.direction, r.proposed, r.current, r.current_source) == ("lower", 55, None, "unknown")
    assert any("GPU memory" in m and "dcgm-exporter" in m for m in a.missing)
    assert only(a, "--kv-cache-dtype").proposed == "fp8"


def test_lowering_max_num_seqs_starts_from_the_current_limit() -> None:
    fig = figures(
        gauges={**THRASHING, "gpu_memory_free_ratio": 0.0},
        counters={"preemptions": 300},
        ttft=FAST_TTFT,
    )
    container = {"name": "vllm", "args": ["--model=x", "--max-num-seqs", "48"]}
    d = DeploymentSpec("llm", "chat", 2, 0, container, "vllm")
    r = only(run(fig, deployment=d), "--max-num-seqs")
    assert (r.current, r.current_source, r.proposed) == (48, "deployment", 43)
    assert r.patch.json_patch == [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "vllm"},
        {"op": "test", "path": "/spec/template/spec/containers/0/args/2", "value": "48"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/2", "value": "43"},
    ]


def test_no_fp8_kv_cache_on_a_gpu_without_fp8() -> None:
    fig = figures(gauges=THRASHING, counters={"preemptions": 300}, ttft=FAST_TTFT)
    fig.gpu_model = "NVIDIA A100-SXM4-80GB"
    a = run(fig)
    assert "--kv-cache-dtype" not in params(a)
    assert any("no FP8 tensor cores" in n for n in a.notes)


def test_preemptions_below_one_percent_are_not_thrashing() -> None:
    fig = figures(gauges=THRASHING, counters={"preemptions": 20}, ttft=FAST_TTFT)
    assert not params(run(fig)) & {"--max-num-seqs", "--gpu-memory-utilization"}


def test_swap_space_only_for_v0_engines() -> None:
    v0 = figures(
        gauges=THRASHING,
        counters={"preemptions": 300},
        info={"swap_space_bytes": str(4 * GIB)},
        ttft=FAST_TTFT,
    )
    r = only(run(v0), "--swap-space")
    assert (r.current, r.proposed, r.direction, r.confidence) == (4.0, 8.0, "raise", "low")
    assert "V1 engines have no swap space" in r.expected_effect
    v1 = figures(gauges=THRASHING, counters={"preemptions": 300}, ttft=FAST_TTFT)
    assert "--swap-space" not in params(run(v1))


def test_block_size_only_with_a_stated_reason() -> None:
    short = figures(
        gauges=THRASHING,
        counters={"preemptions": 300, "prompt_tokens": 200 * 3000, "generation_tokens": 100 * 3000},
        info={"block_size": "128"},
        ttft=FAST_TTFT,
    )
    r = only(run(short), "--block-size")
    assert (r.current, r.proposed, r.direction) == (128, 16, "lower")
    assert "64 tokens" in r.rationale and "21%" in r.rationale
    default = figures(
        gauges=THRASHING, counters={"preemptions": 300}, info={"block_size": "16"}, ttft=FAST_TTFT
    )
    assert "--block-size" not in params(run(default))


def test_queueing_with_an_empty_cache_raises_the_stated_limit() -> None:
    fig = figures(
        gauges={"kv_cache_usage": 0.3, "requests_running": 128, "requests_waiting": 20},
        ttft=SLOW_TTFT,
        tpot=FAST_TPOT,
    )
    container = {"name": "vllm", "args": ["--max-num-seqs=128"]}
    d = DeploymentSpec("llm", "chat", 2, 0, container, "vllm")
    r = only(run(fig, deployment=d), "--max-num-seqs")
    # 128 x 0.8 / 0.3 = 341.3, rounded up to a multiple of 8.
    assert (r.current, r.proposed, r.direction, r.confidence) == (128, 344, "raise", "high")
    assert r.patch.json_patch[-1] == {
        "op": "replace",
        "path": "/spec/template/spec/containers/0/args/0",
        "value": "--max-num-seqs=344",
    }
    assert "time per output token rises" in r.expected_effect


def test_queueing_below_the_batch_limit_points_at_the_token_budget() -> None:
    fig = figures(
        gauges={"kv_cache_usage": 0.3, "requests_running": 40, "requests_waiting": 20},
        info={"max_num_seqs": "256"},
        ttft=SLOW_TTFT,
        tpot=FAST_TPOT,
    )
    a = run(fig)
    assert "--max-num-seqs" not in params(a)
    assert any("--max-num-batched-tokens" in n for n in a.notes)


def test_long_prompts_with_poor_ttft_and_good_tpot_raise_the_prefill_budget() -> None:
    fig = figures(
        gauges={"kv_cache_usage": 0.5, "requests_waiting": 0.2},
        counters={"prompt_tokens": 6000 * 3000},
        info={"max_num_batched_tokens": "2048"},
        ttft=SLOW_TTFT,
        tpot=FAST_TPOT,
    )
    r = only(run(fig), "--max-num-batched-tokens")
    assert (r.current, r.proposed, r.direction) == (2048, 8192, "raise")
    assert "inter-token latency rises" in r.expected_effect  # the trade-off, said


def test_poor_tpot_with_good_ttft_lowers_the_prefill_budget() -> None:
    fig = figures(
        gauges={"kv_cache_usage": 0.5, "requests_waiting": 0},
        counters={"prompt_tokens": 6000 * 3000},
        info={"max_num_batched_tokens": "16384"},
        ttft=FAST_TTFT,
        tpot=SLOW_TPOT,
    )
    r = only(run(fig), "--max-num-batched-tokens")
    assert (r.proposed, r.direction) == (8192, "lower")
    assert "TTFT rises" in r.expected_effect


def test_short_prompts_leave_the_prefill_budget_alone() -> None:
    fig = figures(gauges={"kv_cache_usage": 0.5}, ttft=SLOW_TTFT, tpot=FAST_TPOT)
    assert "--max-num-batched-tokens" not in params(run(fig))


# ---- SGLang ---------------------------------------------------------------------------------


def test_sglang_speaks_its_own_flags() -> None:
    thrash = figures(
        "sglang",
        gauges={**THRASHING, "gpu_memory_free_ratio": 0.1, "gpu_memory_free_bytes": 2.4 * GIB},
        counters={"preemptions": 300},
        ttft=FAST_TTFT,
    )
    container = {"name": "sglang", "args": ["--mem-fraction-static", "0.8"]}
    d = DeploymentSpec("llm", "chat", 1, 0, container, "sglang")
    r = only(run(thrash, deployment=d), "--mem-fraction-static")
    assert (r.current, r.proposed, r.direction) == (0.8, 0.88, "raise")
    assert "steps of 0.01" in r.expected_effect
    queued = figures(
        "sglang",
        gauges={"kv_cache_usage": 0.2, "requests_running": 32, "requests_waiting": 10},
        ttft=SLOW_TTFT,
    )
    assert only(run(queued), "--max-running-requests").direction == "raise"
    prefill = figures(
        "sglang",
        gauges={"kv_cache_usage": 0.5, "requests_waiting": 0},
        counters={"prompt_tokens": 6000 * 3000},
        ttft=SLOW_TTFT,
        tpot=FAST_TPOT,
    )
    assert only(run(prefill), "--chunked-prefill-size").direction == "raise"


# ---- TGI ------------------------------------------------------------------------------------


def test_tgi_raises_max_concurrent_requests_when_refusing_servable_requests() -> None:
    fig = figures(
        "tgi",
        gauges={"requests_running": 100, "requests_waiting": 28},
        errors=300,
        tpot=FAST_TPOT,
        queue={0.1: 1.0},
        info={"max_concurrent_requests": "128"},  # TGI's GET /info states it
    )
    a = run(fig, latency=(TPOT_100MS,))
    r = only(a, "--max-concurrent-requests")
    assert (r.current, r.current_source, r.proposed) == (128, "engine-info", 256)
    unknown = figures(
        "tgi",
        gauges={"requests_running": 100, "requests_waiting": 28},
        errors=300,
        tpot=FAST_TPOT,
    )
    assert "--max-concurrent-requests" not in params(run(unknown, latency=(TPOT_100MS,)))


def test_tgi_max_concurrent_requests_default_applies_when_the_deployment_omits_it() -> None:
    fig = figures(
        "tgi",
        gauges={"requests_running": 100, "requests_waiting": 28},
        errors=300,
        tpot=FAST_TPOT,
        queue={0.1: 1.0},
    )
    d = DeploymentSpec("llm", "chat", 1, 0, {"name": "tgi", "env": []}, "tgi")
    r = only(run(fig, latency=(TPOT_100MS,), deployment=d), "--max-concurrent-requests")
    assert (r.current, r.current_source, r.proposed) == (128, "default", 256)


def test_tgi_trades_queue_time_against_inter_token_latency() -> None:
    slow_queue = {0.5: 0.2, 1.0: 0.5, 2.0: 0.9, 4.0: 1.0}
    fig = figures(
        "tgi",
        gauges={"requests_running": 8, "requests_waiting": 6},
        tpot=FAST_TPOT,
        queue=slow_queue,
    )
    container = {"name": "tgi", "env": [{"name": "MAX_WAITING_TOKENS", "value": "20"}]}
    d = DeploymentSpec("llm", "chat", 1, 0, container, "tgi")
    r = only(run(fig, latency=(TPOT_100MS,), deployment=d), "--max-waiting-tokens")
    assert (r.current, r.proposed, r.direction) == (20, 10, "lower")
    assert r.patch.json_patch[-1] == {
        "op": "replace",
        "path": "/spec/template/spec/containers/0/env/0/value",
        "value": "10",
    }
    choppy = figures(
        "tgi",
        gauges={"requests_running": 8, "requests_waiting": 0},
        tpot=SLOW_TPOT,
        queue={0.005: 1.0},
        info={"max_waiting_tokens": "20"},
    )
    r = only(run(choppy, latency=(TPOT_100MS,)), "--max-waiting-tokens")
    assert (r.current, r.current_source, r.proposed, r.direction) == (
        20,
        "engine-info",
        40,
        "raise",
    )


def test_tgi_raises_max_batch_total_tokens_when_the_kv_need_meets_the_cap() -> None:
    fig = figures(
        "tgi",
        gauges={"requests_running": 60, "requests_waiting": 10, "gpu_memory_free_bytes": 4 * GIB},
        info={"kv_cache_tokens": "40000"},
        tpot=FAST_TPOT,
        queue={0.1: 1.0},
    )
    r = only(run(fig, latency=(TPOT_100MS,)), "--max-batch-total-tokens")
    assert r.direction == "raise" and r.proposed > 40000
    # 4 GiB x 0.98 x 0.9 at 128 KiB per token: 28,901 more tokens, rounded up to 256.
    assert r.proposed == math.ceil((40000 + int(4 * GIB * 0.98 * 0.9 // (128 * 1024))) / 256) * 256


# ---- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "value", "source"),
    [
        ({"args": ["--max-num-seqs=64"]}, 64, "deployment"),
        ({"args": ["--max-num-seqs", "64"]}, 64, "deployment"),
        ({"args": ["--max_num_seqs=64"]}, 64, "deployment"),
        ({"command": ["vllm", "serve", "--max-num-seqs", "32"], "args": ["--max-num-seqs=64"]},
         64, "deployment"),
        ({"args": ["--max-num-seqs=lots"]}, None, "unknown"),
        ({"args": ["--max-num-seqs=0"]}, None, "unknown"),
        ({"args": []}, None, "unknown"),
    ],
)  # fmt: skip
def test_flags_from_the_container(container: dict, value: object, source: str) -> None:
    current = read_flags("vllm", {}, {"name": "vllm", **container})["--max-num-seqs"]
    assert (current.value, current.source) == (value, source)


def test_the_engine_statement_wins_and_a_disagreement_is_noted() -> None:
    current = read_flags(
        "vllm", {"gpu_memory_utilization": "0.9"}, {"args": ["--gpu-memory-utilization=0.8"]}
    )["--gpu-memory-utilization"]
    assert (current.value, current.source) == (0.9, "engine-info")
    assert "rollout may be pending" in current.note
    swap = read_flags("vllm", {"swap_space_bytes": str(4 * GIB)}, None)["--swap-space"]
    assert swap.value == 4.0
    tgi = read_flags("tgi", {}, {"env": [{"name": "MAX_CONCURRENT_REQUESTS", "value": "64"}]})
    assert tgi["--max-concurrent-requests"].value == 64


# ---- HPA arithmetic ---------------------------------------------------------------------------


def _points(pairs: list[tuple[float, float]]) -> list[Point]:
    return [Point(float(i), 2, 10, q, lat) for i, (q, lat) in enumerate(pairs)]


def test_the_queue_target_comes_from_the_fitted_relation() -> None:
    # latency = 0.2 + 0.1 x queue: 80% of a 1 s target at 6 waiting per pod.
    fit = fit_relation(_points([(q, 0.2 + 0.1 * q) for q in range(12)]))
    assert fit is not None
    assert (fit.slope, fit.intercept, fit.r2) == pytest.approx((0.1, 0.2, 1.0))
    assert queue_target(fit, 1.0) == 6.0
    assert queue_target(fit, 0.2) is None  # over target even with an empty queue


def test_no_relation_without_spread_or_steps() -> None:
    assert fit_relation(_points([(3, 0.5)] * 20)) is None
    assert fit_relation(_points([(q, q) for q in range(5)])) is None


def test_a_slow_start_stretches_the_seed_behaviour() -> None:
    seed = scaling_behavior(None)
    assert (seed.scale_up_window, seed.scale_up_period, seed.scale_down_window) == (60, 120, 300)
    slow = scaling_behavior(400)
    assert (slow.scale_up_period, slow.scale_down_window) == (420, 840)
    assert scaling_behavior(30).scale_up_period == 120  # never faster than the seed


def test_hpa_advice_needs_history() -> None:
    fig = figures(gauges={"kv_cache_usage": 0.5, "requests_waiting": 9}, ttft=SLOW_TTFT)
    a = run(fig)
    assert not [r for r in a.recommendations if r.kind == "hpa"]
    assert any("inferwatch advise --prometheus" in n for n in a.notes)


def test_hpa_scale_out_from_prometheus_history() -> None:
    fig = figures(
        source="prometheus",
        gauges={"kv_cache_usage": 0.5, "requests_waiting": 6},
        ttft=SLOW_TTFT,
    )
    fig.headline = Headline("ttft", 0.99, 1.0)
    calm = [Point(float(i), 2, 8.0, 0.5, 0.4) for i in range(20)]
    busy = [Point(float(20 + i), 2, 20.0, 10.0, 2.9) for i in range(10)]
    fig.series = calm + busy
    fig.replicas = Stat.of([2.0] * 30)
    fig.replicas_now = 2
    a = run(fig)
    r = only(a, "maxReplicas")
    # 4 requests/s per replica within the target; 20/s x 1.25 needs 7.
    assert (r.current, r.proposed) == (2, 7)
    # latency = 0.268 + 0.263 x queue through (0.5, 0.4) and (10, 2.9): 0.8 s at 2.02.
    assert r.details["queue_target_per_pod"] == 2.0
    assert only(a, "replicas").proposed == 5
