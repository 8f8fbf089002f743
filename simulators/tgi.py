"""Hugging Face TGI 3.x `/metrics`, rendered from the queueing model.

TGI's router records its metrics with the Rust `metrics` crate and renders them with
`metrics-exporter-prometheus`, and this page follows that crate's format rather than
prometheus_client's: counters have no `_total` suffix and are integers, numbers are printed as
Rust's `Display` prints an f64 (`1`, `0.00015`, never an exponent), families come as counters,
then gauges, then histograms and summaries, each followed by a blank line, with `# HELP` only
where TGI describes the metric. A series exists once TGI has touched it (the batch gauges after
the first batch, `tgi_request_failure{err="overloaded"}` after the first refusal). Sample:

    # HELP tgi_request_count Total number of requests
    # TYPE tgi_request_count counter
    tgi_request_count 812

    # TYPE tgi_request_failure counter
    tgi_request_failure{err="dropped"} 3

    # HELP tgi_request_duration Request duration
    # TYPE tgi_request_duration histogram
    tgi_request_duration_bucket{le="0.00015"} 0

Bucket rules are TGI's (router/src/server.rs): 35 geometric boundaries 0.0001 × 1.5^k for every
`*duration`, a hundred steps of max_input_tokens/100 for `tgi_request_input_length`, of
max_total_tokens/100 for generated and max new tokens, 1..1024 for `tgi_batch_next_size`;
`tgi_request_skipped_tokens` has none, so it renders as a summary. The shape of TGI's batching
loop (a prefill forward for the requests joining, then one decode for the whole batch) gives
the per-`method` batch metrics; how a step's time splits into forward, token decoding and
filtering is a fixed share, since the model times only the step.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from decimal import Decimal

from inferwatch.simulators.model import (
    REFUSED_OVERLOADED,
    REFUSED_QUEUE_FULL,
    REFUSED_VALIDATION,
    Observer,
    Request,
    Simulation,
    Step,
)

VERSION = "3.3.6"
CONTENT_TYPE = "text/plain; charset=utf-8"

# `metrics::describe_*` calls in TGI's router (the first description of a name wins).
DESCRIPTIONS = {
    "tgi_request_success": "Number of successful requests",
    "tgi_request_duration": "Request duration",
    "tgi_request_validation_duration": "Request validation duration",
    "tgi_request_queue_duration": "Request queue duration",
    "tgi_request_inference_duration": "Request inference duration",
    "tgi_request_mean_time_per_token_duration": "Mean time per token per request",
    "tgi_request_generated_tokens": "Generated tokens per request",
    "tgi_batch_inference_count": "Inference calls per method (prefill or decode)",
    "tgi_request_count": "Total number of requests",
    "tgi_batch_inference_success": "Number of successful inference calls per method "
    "(prefill or decode)",
    "tgi_batch_current_size": "Current batch size",
    "tgi_queue_size": "Current queue size",
    "tgi_batch_current_max_tokens": "Maximum tokens for the current batch",
    "tgi_batch_total_tokens": "Maximum amount of tokens in total.",
    "tgi_request_max_new_tokens": "Maximum new tokens per request",
    "tgi_batch_inference_duration": "Batch inference duration",
    "tgi_batch_forward_duration": "Batch forward duration per method (prefill or decode)",
    "tgi_request_skipped_tokens": "Speculated tokens per request",
    "tgi_batch_filter_duration": "Time spent filtering batches and sending generated tokens "
    "per method (prefill or decode)",
    "tgi_batch_decode_duration": "Time spent decoding a batch per method (prefill or decode)",
    "tgi_request_input_length": "Input token length per request",
    "tgi_batch_next_size": "Batch size of the next batch",
}

# The summary quantiles metrics-exporter-prometheus renders by default.
SUMMARY_QUANTILES = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)

# How the time of one forward call splits (the model only times the whole step).
FORWARD_SHARE = 0.93
DECODE_SHARE = 0.04
FILTER_SHARE = 0.02
CONCAT_SHARE = 0.03

_REFUSAL_ERRORS = {
    REFUSED_VALIDATION: "validation",
    REFUSED_OVERLOADED: "overloaded",
    REFUSED_QUEUE_FULL: "overloaded",
}


def rust_float(value: float) -> str:
    """An f64 as Rust's `Display` writes it: shortest round-trip digits, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def duration_buckets() -> tuple[float, ...]:
    """0.0001 × 1.5^k for k = 1..35, multiplied step by step as TGI does (same rounding)."""
    out, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


def linear_buckets(maximum: int) -> tuple[float, ...]:
    return tuple((maximum / 100.0) * (x + 1) for x in range(100))


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        return list(itertools.accumulate(self.counts[:-1]))


class _Summary:
    __slots__ = ("count", "recent", "sum")

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=2048)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.recent.extend([value] * min(times, 2048))
        self.sum += value * times
        self.count += times

    def quantile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))]


Labels = tuple[tuple[str, str], ...]


class TgiWriter(Observer):
    """Renders a simulation as TGI 3.x's router `/metrics` page."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model_id: str):
        if len(sim.engines) != 1:
            raise ValueError("TGI has no data parallelism: simulate it with one engine rank")
        self.sim = sim
        self.model_id = model_id
        cfg = sim.config
        self.max_total_tokens = cfg.max_model_len
        self.max_input_tokens = cfg.max_model_len - 1
        durations = duration_buckets()
        self._bounds = {
            "tgi_request_input_length": linear_buckets(self.max_input_tokens),
            "tgi_request_generated_tokens": linear_buckets(self.max_total_tokens),
            "tgi_request_max_new_tokens": linear_buckets(self.max_total_tokens),
            "tgi_batch_next_size": tuple(float(x + 1) for x in range(1024)),
        }
        self._durations = durations
        self.counters: dict[str, dict[Labels, int]] = {}
        self.gauges: dict[str, dict[Labels, float]] = {}
        self.histograms: dict[str, dict[Labels, _Histogram]] = {}
        self.summaries: dict[str, dict[Labels, _Summary]] = {}
        # Set once at warmup, from the KV capacity the shards report.
        self._gauge("tgi_batch_max_total_tokens", cfg.num_blocks * cfg.block_size)
        self._batch_seen = False
        sim.subscribe(self)

    # -- recording, as the `metrics` macros do ---------------------------------------------------

    def _count(self, name: str, labels: Labels = (), by: int = 1) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0) + by

    def _gauge(self, name: str, value: float, labels: Labels = ()) -> None:
        self.gauges.setdefault(name, {})[labels] = float(value)

    def _observe(self, name: str, value: float, labels: Labels = ()) -> None:
        bounds = self._bounds.get(name)
        if bounds is None and name.endswith("duration"):
            bounds = self._durations
        if bounds is None:
            summary = self.summaries.setdefault(name, {}).setdefault(labels, _Summary())
            summary.observe(value)
            return
        series = self.histograms.setdefault(name, {})
        hist = series.get(labels)
        if hist is None:
            hist = series[labels] = _Histogram(bounds)
        hist.observe(value)

    # -- the model's events -------------------------------------------------------------------

    def arrived(self, req: Request) -> None:
        self._count("tgi_request_count")
        self._observe("tgi_request_input_length", req.prompt_tokens)
        self._observe("tgi_request_max_new_tokens", req.max_tokens)

    def refused(self, req: Request, reason: str) -> None:
        self._count("tgi_request_count")
        self._count("tgi_request_failure", (("err", _REFUSAL_ERRORS[reason]),))

    def stepped(self, step: Step) -> None:
        self._batch_seen = True
        if step.new or step.resumed:
            self._observe("tgi_batch_next_size", len(step.new) + len(step.resumed))
            if step.concat is not None:
                self._count("tgi_batch_concat", (("reason", step.concat),))
            self._forward("prefill", step.prefill_seconds, failed=False)
        if step.decode_seqs:
            self._forward("decode", step.decode_seconds, failed=bool(step.failed))
            if step.concat is not None:
                self._observe(
                    "tgi_batch_concat_duration",
                    CONCAT_SHARE * step.decode_seconds,
                    (("method", "decode"),),
                )
        if step.tokens:
            # One record per generation: the speculative tokens beyond the first (none here).
            self.summaries.setdefault("tgi_request_skipped_tokens", {}).setdefault(
                (), _Summary()
            ).observe(0.0, len(step.tokens))

    def _forward(self, method: str, seconds: float, failed: bool) -> None:
        labels = (("method", method),)
        self._count("tgi_batch_inference_count", labels)
        if failed:
            self._count("tgi_batch_inference_failure", labels)
            return
        self._observe("tgi_batch_forward_duration", FORWARD_SHARE * seconds, labels)
        self._observe("tgi_batch_decode_duration", DECODE_SHARE * seconds, labels)
        self._observe("tgi_batch_filter_duration", FILTER_SHARE * seconds, labels)
        self._observe("tgi_batch_inference_duration", seconds, labels)
        self._count("tgi_batch_inference_success", labels)

    def finished(self, req: Request) -> None:
        if req.finish_reason == "abort":
            self._count("tgi_request_failure", (("err", "dropped"),))
            return
        if req.finish_reason == "error":
            self._count("tgi_request_failure", (("err", "generation"),))
            return
        assert req.finished_at is not None and req.scheduled_at is not None
        validation = validation_seconds(req)
        inference = req.finished_at - req.scheduled_at
        self._count("tgi_request_success")
        self._observe("tgi_request_duration", validation + req.e2e())
        self._observe("tgi_request_validation_duration", validation)
        self._observe("tgi_request_queue_duration", req.scheduled_at - req.arrival)
        self._observe("tgi_request_inference_duration", inference)
        self._observe(
            "tgi_request_mean_time_per_token_duration", inference / max(1, req.output_tokens)
        )
        self._observe("tgi_request_generated_tokens", req.output_tokens)

    def observe_http(
        self,
        handler: str,
        method: str,
        status: int,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """TGI's router keeps no per-handler HTTP metrics: its request metrics cover it."""

    # -- the page -----------------------------------------------------------------------------

    def render(self) -> bytes:
        engine = self.sim.engines[0]
        if self.counters.get("tgi_request_count") or engine.in_flight:
            self._gauge("tgi_queue_size", engine.num_waiting)
        if self._batch_seen:
            self._gauge("tgi_batch_current_size", engine.num_running)
            self._gauge("tgi_batch_current_max_tokens", engine.reserved_tokens)
        out: list[str] = []
        for name in sorted(self.counters):
            self._family(out, name, "counter")
            for labels, value in self.counters[name].items():
                out.append(f"{name}{_labels(labels)} {value}")
            out.append("")
        for name in sorted(self.gauges):
            self._family(out, name, "gauge")
            for labels, value in self.gauges[name].items():
                out.append(f"{name}{_labels(labels)} {rust_float(value)}")
            out.append("")
        distributions = sorted([*self.histograms, *self.summaries])
        for name in distributions:
            if name in self.histograms:
                self._family(out, name, "histogram")
                for labels, hist in self.histograms[name].items():
                    for bound, count in zip(hist.bounds, hist.cumulative(), strict=True):
                        le = (*labels, ("le", rust_float(bound)))
                        out.append(f"{name}_bucket{_labels(le)} {count}")
                    out.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {hist.count}")
                    out.append(f"{name}_sum{_labels(labels)} {rust_float(hist.sum)}")
                    out.append(f"{name}_count{_labels(labels)} {hist.count}")
            else:
                self._family(out, name, "summary")
                for labels, summary in self.summaries[name].items():
                    for q in SUMMARY_QUANTILES:
                        ql = (*labels, ("quantile", rust_float(q)))
                        out.append(f"{name}{_labels(ql)} {rust_float(summary.quantile(q))}")
                    out.append(f"{name}_sum{_labels(labels)} {rust_float(summary.sum)}")
                    out.append(f"{name}_count{_labels(labels)} {summary.count}")
            out.append("")
        return ("\n".join(out) + "\n").encode() if out else b""

    @staticmethod
    def _family(out: list[str], name: str, kind: str) -> None:
        if name in DESCRIPTIONS:
            out.append(f"# HELP {name} {DESCRIPTIONS[name]}")
        out.append(f"# TYPE {name} {kind}")

    def info(self) -> dict:
        """`GET /info` of TGI 3.x's router."""
        cfg = self.sim.config
        return {
            "model_id": self.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": cfg.max_in_flight,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": VERSION,
            "sha": None,
            "docker_label": None,
        }


def validation_seconds(req: Request) -> float:
    """Tokenizing and checking a request in the router: a fraction of a millisecond."""
    return 0.0003 + 1.5e-6 * req.prompt_tokens


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
