"""Triton Inference Server with the TensorRT-LLM backend: `/metrics`, from the queueing model.

The families, types and labels are those of the two real pages of the TensorRT-LLM backend's
README (`tests/fixtures/upstream/triton-trtllm-*.prom`): Triton's per-model `nv_inference_*`
counters (cumulative microseconds for durations) and the backend's `nv_trt_llm_*` iteration
statistics, each labelled by Triton `model` and `version`. Triton renders with prometheus-cpp:
labels sorted by name, counters without `_total`, integers without a decimal point. Sample:

    nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 3
    nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",...} 0.48

Triton reports per model, not per rank: with several simulated ranks the counts add up and
the KV blocks are pooled.
"""

from __future__ import annotations

import time

from inferwatch.simulators.model import Observer, Request, Simulation, Step

VERSION = "2.52.0"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODEL_VERSION = "1"
# The backend's runtime memory (bytes), fixed once the engine is built.
RUNTIME_MEMORY = {"pinned": 0, "gpu": 1610236, "cpu": 0}
# Share of a request's compute time spent on its inputs and outputs (Triton's split of it).
IO_SHARE = 0.01

_COUNTERS = (
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
    ),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes"),
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include cached "
        "requests)",
    ),
)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class TritonTrtllmWriter(Observer):
    """Renders a simulation as Triton's page for one TensorRT-LLM model."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model: str):
        self.sim = sim
        self.model = model
        self.counters = {name: 0.0 for name, _help in _COUNTERS}
        self.iterations = 0
        self.context_tokens = 0
        self.context_requests = 0
        self.generation_requests = 0
        sim.subscribe(self)

    def stepped(self, step: Step) -> None:
        self.iterations += 1
        self.counters["nv_inference_exec_count"] += 1
        self.context_tokens = step.prefill_tokens
        self.context_requests = len(step.new) + len(step.resumed)
        self.generation_requests = step.decode_seqs

    def finished(self, req: Request) -> None:
        c = self.counters
        if req.finish_reason in ("stop", "length"):
            c["nv_inference_request_success"] += 1
            c["nv_inference_count"] += 1
        else:
            c["nv_inference_request_failure"] += 1
        assert req.finished_at is not None
        c["nv_inference_request_duration_us"] += round(req.e2e() * 1e6)
        if req.scheduled_at is not None:
            c["nv_inference_queue_duration_us"] += round((req.scheduled_at - req.arrival) * 1e6)
            compute = (req.finished_at - req.scheduled_at) * 1e6
            c["nv_inference_compute_input_duration_us"] += round(compute * IO_SHARE)
            c["nv_inference_compute_output_duration_us"] += round(compute * IO_SHARE)
            c["nv_inference_compute_infer_duration_us"] += round(compute * (1 - 2 * IO_SHARE))

    def observe_http(self, *_args: object) -> None:
        """Triton's page has no per-endpoint HTTP metrics."""

    def _labels(self, **extra: str) -> str:
        labels = {"model": self.model, "version": MODEL_VERSION, **extra}
        return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))

    def render(self) -> bytes:
        engines = self.sim.engines
        cfg = self.sim.config
        blocks = cfg.num_blocks * len(engines)
        free = sum(e.free_blocks for e in engines)
        running = sum(e.num_running for e in engines)
        waiting = sum(e.num_waiting for e in engines)
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{{{labels}}} {_number(v)}" for labels, v in samples)

        for name, help_ in _COUNTERS:
            family(name, "counter", help_, [(self._labels(), self.counters[name])])
        family(
            "nv_inference_pending_request_count",
            "gauge",
            "Instantaneous number of pending requests awaiting execution per-model.",
            [(self._labels(), waiting)],
        )
        requests = {
            "waiting": waiting,
            "context": self.context_requests,
            "scheduled": running,
            "max": cfg.max_num_seqs * len(engines),
            "active": running,
        }
        family(
            "nv_trt_llm_request_metrics",
            "gauge",
            "TRT LLM request metrics",
            [(self._labels(request_type=k), v) for k, v in requests.items()],
        )
        family(
            "nv_trt_llm_runtime_memory_metrics",
            "gauge",
            "TRT LLM runtime memory metrics",
            [(self._labels(memory_type=k), v) for k, v in RUNTIME_MEMORY.items()],
        )
        kv = {
            "fraction": round((blocks - free) / blocks, 4),
            "tokens_per": cfg.block_size,
            "used": blocks - free,
            "free": free,
            "max": blocks,
        }
        family(
            "nv_trt_llm_kv_cache_block_metrics",
            "gauge",
            "TRT LLM KV cache block metrics",
            [(self._labels(kv_cache_block_type=k), v) for k, v in kv.items()],
        )
        batcher = {
            "micro_batch_id": 0,
            "generation_requests": self.generation_requests,
            "total_context_tokens": self.context_tokens,
        }
        family(
            "nv_trt_llm_inflight_batcher_metrics",
            "gauge",
            "TRT LLM inflight_batcher-specific metrics",
            [(self._labels(inflight_batcher_specific_metric=k), v) for k, v in batcher.items()],
        )
        general = {"iteration_counter": self.iterations, "timestamp": int(time.time())}
        family(
            "nv_trt_llm_general_metrics",
            "gauge",
            "General TRT LLM metrics",
            [(self._labels(general_type=k), v) for k, v in general.items()],
        )
        family(
            "nv_trt_llm_disaggregated_serving_metrics",
            "counter",
            "TRT LLM disaggregated serving metrics",
            [
                (self._labels(disaggregated_serving_type=k), 0)
                for k in ("kv_cache_transfer_ms", "request_count")
            ],
        )
        return ("\n".join(out) + "\n").encode()
