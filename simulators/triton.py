"""Triton Inference Server `/metrics`, from the queueing model: with the TensorRT-LLM backend,
and serving several models.

Triton reports per model: `nv_inference_*` counters (cumulative microseconds for durations)
and the pending-request gauge, each labelled by Triton `model` and `version`. Triton renders
with prometheus-cpp: labels sorted by name with a histogram's `le` last, counters without
`_total`, integers without a decimal point.

`TritonTrtllmWriter` is one TensorRT-LLM model: the families, types and labels of the two real
pages of the TensorRT-LLM backend's README (`tests/fixtures/upstream/triton-trtllm-*.prom`):
Triton's counters from before failure reasons, and the backend's `nv_trt_llm_*` iteration
statistics. Two options add what a current deployment shows beyond those pages:
`histogram_latencies` (Triton's `--metrics-config histogram_latencies=true`, the first-response
histogram in milliseconds) and `token_histograms` (the backend's `nv_llm_input_token_len` and
`nv_llm_output_token_len`, `custom_metrics_reporter.cc`). Sample:

    nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 3
    nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",...} 0.48

With several simulated ranks the counts add up and the KV blocks are pooled: the backend
reports one executor per model.

`TritonWriter` is Triton 24.x serving several models, one engine rank per model (one model
instance each), with failure reasons and the first-response histogram:

    nv_inference_request_failure{model="qwen2.5-7b-instruct",reason="CANCELED",version="1"} 2
    nv_inference_pending_request_count{model="llama-3.1-8b-instruct",version="1"} 4

A model's queue is shown as Triton's pending count, as for a backend that takes a request only
when it has room in its batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from inferwatch.exporters.measure import BucketCounts
from inferwatch.simulators.model import REFUSED_VALIDATION, Observer, Request, Simulation, Step

VERSION = "2.52.0"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODEL_VERSION = "1"
# The backend's runtime memory (bytes), fixed once the engine is built.
RUNTIME_MEMORY = {"pinned": 0, "gpu": 1610236, "cpu": 0}
# Share of a request's compute time spent on its inputs and outputs (Triton's split of it).
IO_SHARE = 0.01
# Triton's default first-response histogram boundaries (milliseconds).
FIRST_RESPONSE_BUCKETS_MS = (100.0, 500.0, 2000.0, 5000.0)
# The TensorRT-LLM backend's token-length histogram boundaries (tokens).
TOKEN_BUCKETS = (10.0, 50.0, 100.0, 500.0, 1000.0)
# Triton's failure reasons (24.x): refused by a full queue, cancelled, failed in the backend.
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
_REASON_OF = {"abort": "CANCELED", "error": "BACKEND"}

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


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


class _Histogram(BucketCounts):
    def samples(self, name: str, labels: dict[str, str]) -> list[str]:
        base = _labels(**labels)
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else _number(bound)
            out.append(f'{name}_bucket{{{base},le="{le}"}} {total}')
        out.append(f"{name}_sum{{{base}}} {_number(round(self.sum, 3))}")
        out.append(f"{name}_count{{{base}}} {total}")
        return out


class _Model:
    """Triton's per-model figures for one served model."""

    def __init__(self, name: str, reasons: bool, histogram_latencies: bool):
        self.name = name
        self.counters = {name: 0.0 for name, _help in _COUNTERS}
        # Triton 24.x counts failures per reason; earlier builds have one unlabelled counter.
        self.failures = dict.fromkeys(FAILURE_REASONS if reasons else ("",), 0)
        self.first_response = _Histogram(FIRST_RESPONSE_BUCKETS_MS) if histogram_latencies else None

    def first_token(self, req: Request) -> None:
        ttft = req.ttft()
        if self.first_response is not None and ttft is not None:
            self.first_response.observe(ttft * 1000)

    def finished(self, req: Request) -> None:
        c = self.counters
        if req.finish_reason in ("stop", "length"):
            c["nv_inference_request_success"] += 1
            c["nv_inference_count"] += 1
        else:
            self._failed(_REASON_OF.get(req.finish_reason or "", "OTHER"))
        assert req.finished_at is not None
        c["nv_inference_request_duration_us"] += round(req.e2e() * 1e6)
        if req.scheduled_at is not None:
            c["nv_inference_queue_duration_us"] += round((req.scheduled_at - req.arrival) * 1e6)
            compute = (req.finished_at - req.scheduled_at) * 1e6
            c["nv_inference_compute_input_duration_us"] += round(compute * IO_SHARE)
            c["nv_inference_compute_output_duration_us"] += round(compute * IO_SHARE)
            c["nv_inference_compute_infer_duration_us"] += round(compute * (1 - 2 * IO_SHARE))

    def refused(self, reason: str) -> None:
        # A full queue rejects; a request the model cannot take fails in its backend.
        self._failed("BACKEND" if reason == REFUSED_VALIDATION else "REJECTED")

    def _failed(self, reason: str) -> None:
        self.counters["nv_inference_request_failure"] += 1
        # Builds without reasons count every failure in their one counter.
        key = reason if "" not in self.failures else ""
        self.failures[key] += 1

    def samples(self, name: str, waiting: int) -> list[tuple[str, float]]:
        """(labels, value) of one counter family, or of the pending-request gauge."""
        base = {"model": self.name, "version": MODEL_VERSION}
        if name == "nv_inference_pending_request_count":
            return [(_labels(**base), waiting)]
        if name == "nv_inference_request_failure" and "" not in self.failures:
            return [(_labels(**base, reason=r), n) for r, n in self.failures.items()]
        return [(_labels(**base), self.counters[name])]


class _Page:
    """Builds an exposition family by family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{{{labels}}} {_number(v)}" for labels, v in samples]

    def histogram(self, name: str, help_: str, samples: list[str]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram", *samples]

    def core(self, models: list[_Model], waiting: list[int]) -> None:
        """Triton's own per-model families."""
        for name, help_ in _COUNTERS:
            samples = [s for m, w in zip(models, waiting, strict=True) for s in m.samples(name, w)]
            self.family(name, "counter", help_, samples)
        pending = "nv_inference_pending_request_count"
        self.family(
            pending,
            "gauge",
            "Instantaneous number of pending requests awaiting execution per-model.",
            [s for m, w in zip(models, waiting, strict=True) for s in m.samples(pending, w)],
        )
        if any(m.first_response is not None for m in models):
            self.histogram(
                "nv_inference_first_response_histogram_ms",
                "Duration from request to first response in milliseconds",
                [
                    line
                    for m in models
                    if m.first_response is not None
                    for line in m.first_response.samples(
                        "nv_inference_first_response_histogram_ms",
                        {"model": m.name, "version": MODEL_VERSION},
                    )
                ],
            )

    def render(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


class TritonTrtllmWriter(Observer):
    """Renders a simulation as Triton's page for one TensorRT-LLM model."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(
        self,
        sim: Simulation,
        model: str,
        *,
        histogram_latencies: bool = False,
        token_histograms: bool = False,
    ):
        self.sim = sim
        self.model = model
        self.core = _Model(model, reasons=False, histogram_latencies=histogram_latencies)
        self.input_tokens = _Histogram(TOKEN_BUCKETS) if token_histograms else None
        self.output_tokens = _Histogram(TOKEN_BUCKETS) if token_histograms else None
        self.iterations = 0
        self.context_tokens = 0
        self.context_requests = 0
        self.generation_requests = 0
        sim.subscribe(self)

    def refused(self, req: Request, reason: str) -> None:
        self.core.refused(reason)

    def stepped(self, step: Step) -> None:
        self.iterations += 1
        self.core.counters["nv_inference_exec_count"] += 1
        self.context_tokens = step.prefill_tokens
        self.context_requests = len(step.new) + len(step.resumed)
        self.generation_requests = step.decode_seqs
        for req in step.first_tokens:
            self.core.first_token(req)

    def finished(self, req: Request) -> None:
        self.core.finished(req)
        # The backend observes a request's token counts when it sends its final response.
        done = req.finish_reason in ("stop", "length")
        if done and self.input_tokens is not None and self.output_tokens is not None:
            self.input_tokens.observe(req.prompt_tokens)
            self.output_tokens.observe(req.output_tokens)

    def observe_http(self, *_args: object) -> None:
        """Triton's page has no per-endpoint HTTP metrics."""

    def _labels(self, **extra: str) -> str:
        return _labels(model=self.model, version=MODEL_VERSION, **extra)

    def render(self) -> bytes:
        engines = self.sim.engines
        cfg = self.sim.config
        blocks = cfg.num_blocks * len(engines)
        free = sum(e.free_blocks for e in engines)
        running = sum(e.num_running for e in engines)
        waiting = sum(e.num_waiting for e in engines)
        page = _Page()
        page.core([self.core], [waiting])
        family = page.family
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
        tokens = (
            ("nv_llm_output_token_len", "total_output_tokens", self.output_tokens),
            ("nv_llm_input_token_len", "total_input_tokens", self.input_tokens),
        )
        for name, kind, histogram in tokens:
            if histogram is not None:
                labels = {"model": self.model, "response_metric_type": kind}
                page.histogram(
                    name,
                    "TRT LLM response metrics",
                    histogram.samples(name, {**labels, "version": MODEL_VERSION}),
                )
        return page.render()


class TritonWriter(Observer):
    """Renders a simulation as Triton's page for several models: engine rank i serves
    `models[i]`."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, models: Sequence[str]):
        if len(models) != len(sim.engines) or len(set(models)) != len(models):
            raise ValueError(
                f"triton: {len(models)} distinct model name(s) for {len(sim.engines)} engine(s); "
                "each served model is one engine"
            )
        self.sim = sim
        self.models = [_Model(m, reasons=True, histogram_latencies=True) for m in models]
        sim.subscribe(self)

    def refused(self, req: Request, reason: str) -> None:
        self.models[req.rank].refused(reason)

    def stepped(self, step: Step) -> None:
        model = self.models[step.rank]
        for req in step.first_tokens:
            model.first_token(req)

    def finished(self, req: Request) -> None:
        model = self.models[req.rank]
        # A decoupled backend executes each request once, streaming its responses.
        model.counters["nv_inference_exec_count"] += 1
        model.finished(req)

    def observe_http(self, *_args: object) -> None:
        """Triton's page has no per-endpoint HTTP metrics."""

    def render(self) -> bytes:
        page = _Page()
        page.core(self.models, [e.num_waiting for e in self.sim.engines])
        return page.render()
