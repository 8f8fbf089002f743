"""The engines' default histogram bucket boundaries, per normalized family, in seconds.

A latency SLI reads the fraction of requests under a threshold from one bucket, so the
threshold must be one of these boundaries (the exporter never re-buckets). The boundaries are
the engines' own defaults as their sources declare them; an engine started with custom buckets
(vLLM `--custom-histogram-buckets`, SGLang's bucket environment variables) has other ones,
which an SLO spec can state. A family an engine does not report has no entry.

The `le` label text of a boundary is `canonical_float(boundary)` (`"0.5"`, `"1.0"`), what the
exporter writes whatever the engine printed.
"""

from __future__ import annotations

from collections.abc import Mapping

from inferwatch import schema
from inferwatch.exporters.normalize import canonical_float

TTFT = schema.family("llm_time_to_first_token_seconds").name
ITL = schema.family("llm_inter_token_latency_seconds").name
TPOT = schema.family("llm_time_per_output_token_seconds").name
E2E = schema.family("llm_request_duration_seconds").name
QUEUE = schema.family("llm_request_queue_duration_seconds").name


def _tgi_duration_buckets() -> tuple[float, ...]:
    """TGI's `*duration` histograms: 35 boundaries, 0.0001 s times 1.5 repeatedly.

    Computed the way TGI's router computes them (repeated f64 multiplication), so each value is
    the same double TGI prints, e.g. 0.00015000000000000001.
    """
    values, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        values.append(value)
    return tuple(values)


# fmt: off
# vLLM V1 defaults (`vllm/v1/metrics/buckets.py`, 0.12-0.33). V0 used prefixes of these lists
# (TTFT up to 10.0, TPOT up to 2.5, e2e from 1.0), so every V0 boundary is also listed here.
_VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
              7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_VLLM_TOKEN = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
_VLLM_REQUEST = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)

_TGI_DURATION = _tgi_duration_buckets()

# SGLang 0.5.23 defaults (`sglang/srt/observability/metrics_collector.py`).
_SGLANG_TTFT = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0,
                100.0, 200.0, 400.0)
_SGLANG_E2E = (*_SGLANG_TTFT, 600.0, 1200.0, 1800.0, 2400.0)
_SGLANG_TOKEN = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06,
                 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0)

# Triton's first-response histogram (opt-in `histogram_latencies=true`): 100, 500, 2000 and
# 5000 ms, in seconds after the exporter's ms-to-s scaling.
_TRITON_FIRST_RESPONSE = (0.1, 0.5, 2.0, 5.0)
# fmt: on

DEFAULT_BUCKETS: Mapping[str, Mapping[str, tuple[float, ...]]] = {
    "vllm": {
        TTFT: _VLLM_TTFT,
        ITL: _VLLM_TOKEN,
        TPOT: _VLLM_TOKEN,
        E2E: _VLLM_REQUEST,
        QUEUE: _VLLM_REQUEST,
    },
    "tgi": {TPOT: _TGI_DURATION, E2E: _TGI_DURATION, QUEUE: _TGI_DURATION},
    "sglang": {TTFT: _SGLANG_TTFT, ITL: _SGLANG_TOKEN, TPOT: _SGLANG_TOKEN, E2E: _SGLANG_E2E},
    "trtllm": {TTFT: _TRITON_FIRST_RESPONSE},
    "triton": {TTFT: _TRITON_FIRST_RESPONSE},
}


def boundaries(engine: str, family: str) -> tuple[float, ...]:
    """The engine's default boundaries for a family; empty when it does not report it."""
    return DEFAULT_BUCKETS.get(engine, {}).get(family, ())


def le_text(boundary: float) -> str:
    """The `le` label value the exporter writes for a boundary."""
    return canonical_float(boundary)
