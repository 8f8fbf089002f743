"""NVIDIA Triton Inference Server: its per-model figures, and its GPU figures.

Sample output (two models on one server):

    llm_requests_waiting{engine="triton",model="bert"} 3
    llm_requests_finished_total{engine="triton",model="bert",reason="stop"} 1250
    llm_requests_finished_total{engine="triton",model="bert",reason="error"} 2
    llm_gpu_utilization_ratio{gpu_uuid="GPU-8e5a..."} 0.82

Every per-model series carries Triton's `model` and `version`. `model` is the model label;
`version` is dropped: Triton loads one version of a model unless its version policy says
otherwise, and with several loaded their counts add up to the model's.

Triton's latency figures are cumulative microseconds (`nv_inference_request_duration_us`,
`..._queue_duration_us`, `..._compute_*_duration_us`): sums without counts per bucket, so no
latency histogram can be made from them and none is. Only the opt-in first-response histogram
(`--metrics-config histogram_latencies=true`) is a distribution, and it becomes time to first
token.
"""

from __future__ import annotations

from inferwatch.exporters.adapter import Adapter, Concept, Source
from inferwatch.schema import Group, Kind

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

MODEL = {"model": "model"}

# Triton's failure reasons (24.0x+). A build before them has no `reason` label at all.
_FAILURES: tuple[tuple[str, str, str], ...] = (
    ("REJECTED", "error", "refused by a full queue or a rate limit"),
    ("CANCELED", "abort", "cancelled by the client"),
    ("BACKEND", "error", "the backend failed"),
    ("OTHER", "error", ""),
    ("", "error", "builds before failure reasons"),
)


def waiting() -> Source:
    return Source("nv_inference_pending_request_count", G, labels=MODEL)


def first_response() -> Source:
    return Source(
        "nv_inference_first_response_histogram_ms",
        H,
        labels=MODEL,
        scale=0.001,
        note="ms; opt-in (`--metrics-config histogram_latencies=true`)",
    )


def outcomes() -> tuple[Source, ...]:
    success = Source(
        "nv_inference_request_success",
        C,
        labels=MODEL,
        set_labels={"reason": "stop"},
        note="Triton does not tell stop from length: successes count as `stop`",
    )
    failures = tuple(
        Source(
            "nv_inference_request_failure",
            C,
            labels=MODEL,
            match={"reason": upstream},
            set_labels={"reason": reason},
            note=note,
        )
        for upstream, reason, note in _FAILURES
    )
    return (success, *failures)


CORE_NOTES = (
    "Not mapped: the cumulative microsecond counters `nv_inference_request_duration_us`, "
    "`nv_inference_queue_duration_us` and `nv_inference_compute_{input,infer,output}"
    "_duration_us` (a mean per request is `rate(..._us) / rate(nv_inference_request_success)`; "
    "serve them with `--passthrough` to chart it), their opt-in `*_summary_us` quantiles "
    "(summaries cannot be aggregated), `nv_inference_count` and `nv_inference_exec_count` "
    "(batch sizes, not requests).",
    "An ensemble's request is counted by every model it runs: Triton reports the ensemble and "
    "each model it composes (tensorrtllm_backend's `preprocessing`, `tensorrt_llm`, "
    "`postprocessing`) as models of their own. A sum over all of a pod's models counts a "
    'request once per step: filter on the model clients call (`model="ensemble"`) for '
    "request rates, error ratios and SLOs.",
)

ADAPTER = Adapter(
    name="triton",
    title="Triton",
    group=Group.ENGINE,
    # A Triton with no model loaded yet shows only its GPU and CPU figures: still Triton.
    detect=("nv_inference_", "nv_gpu_", "nv_cpu_"),
    model_label="model",
    versions="Triton 23.x-25.x per-model metrics (any backend)",
    several_models=True,
    rank_note="Triton reports per model, not per replica: no ranks. A model's instances "
    "(`instance_group`) share its series.",
    concepts=(
        Concept(
            "llm_requests_waiting",
            (waiting(),),
            note="requests queued for the model, not yet executing",
        ),
        Concept("llm_time_to_first_token_seconds", (first_response(),)),
        Concept(
            "llm_requests_finished_total",
            outcomes(),
            note="A reason Triton adds later is left out until mapped here.",
        ),
        Concept("llm_engine_info", (), note="the model comes from the page"),
    ),
    notes=(
        *CORE_NOTES,
        "Triton's GPU figures (`nv_gpu_*`) are read as the GPU source when no dcgm-exporter "
        "is given (see Triton GPU below).",
    ),
)

# Triton's GPU families, read from the engine's own page when there is no dcgm-exporter. The
# page is Triton's, in this pod, so every GPU on it is one of this pod's GPUs.
_GPU = {"gpu_uuid": "gpu_uuid"}

GPU_ADAPTER = Adapter(
    name="triton-gpu",
    title="Triton GPU",
    group=Group.GPU,
    detect=("nv_gpu_",),
    versions="Triton's `--allow-gpu-metrics` families (on by default), used when no "
    "`--dcgm` is given",
    concepts=(
        Concept(
            "llm_gpu_utilization_ratio",
            (Source("nv_gpu_utilization", G, labels=_GPU, note="already 0..1"),),
        ),
        Concept(
            "llm_gpu_memory_used_bytes",
            (Source("nv_gpu_memory_used_bytes", G, labels=_GPU),),
        ),
        Concept("llm_gpu_power_watts", (Source("nv_gpu_power_usage", G, labels=_GPU),)),
        Concept(
            "llm_gpu_energy_joules_total",
            (
                Source(
                    "nv_energy_consumption",
                    C,
                    labels=_GPU,
                    note="joules since Triton started (a restart resets it, as any counter)",
                ),
            ),
        ),
    ),
    notes=(
        "Triton labels GPUs by `gpu_uuid` only: `gpu` and `gpu_model` are absent.",
        "Free memory is `nv_gpu_memory_total_bytes` minus used: a difference of two series, "
        "which a table of sources does not compute; temperature, XID errors and the profiling "
        "ratios are not reported by Triton. Give `--dcgm` for them.",
    ),
)
