"""SGLang `/metrics` (the docs-era collector), rendered from the queueing model.

The families, types, labels, HELP texts and bucket boundaries are those of the real capture
`tests/fixtures/upstream/sglang-docs-production_metrics-00b08c49.prom`: one `model_name` label,
`time_per_output_token_seconds` observed per token, and the tokenizer's
`func_latency_seconds{name="generate_request"}`. Like SGLang, the page is built with
prometheus_client. Sample:

    sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 41.0
    sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.62

This SGLang format has no rank labels: with several simulated ranks, request counts add up and
the token usage is their mean, as one scheduler over all of them would see it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from inferwatch.simulators.model import Observer, Request, Simulation, Step

VERSION = "0.4.0"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# fmt: off
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
TPOT_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                0.4, 0.5, 0.75, 1.0, 2.5)
# fmt: on
# `func_timer.py`: 0.05 s times 1.5, 18 times, computed as SGLang computes it.
FUNC_BUCKETS = tuple(0.05 * 1.5**k for k in range(18))
# What the tokenizer's generate_request takes before handing a request on (seconds).
GENERATE_REQUEST_SECONDS = 0.0003
THROUGHPUT_WINDOW = 5.0  # seconds over which gen_throughput and cache_hit_rate are averaged


class SglangWriter(Observer):
    """Renders a simulation as SGLang's `/metrics` page."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model_name: str):
        self.sim = sim
        self.model_name = model_name
        reg = self.registry = CollectorRegistry()
        labels = ("model_name",)
        m = model_name
        self.prompt_tokens = Counter(
            "sglang:prompt_tokens", "Number of prefill tokens processed.", labels, registry=reg
        ).labels(m)
        self.generation_tokens = Counter(
            "sglang:generation_tokens",
            "Number of generation tokens processed.",
            labels,
            registry=reg,
        ).labels(m)
        self.token_usage = Gauge(
            "sglang:token_usage", "The token usage", labels, registry=reg
        ).labels(m)
        self.cache_hit_rate = Gauge(
            "sglang:cache_hit_rate", "The cache hit rate", labels, registry=reg
        ).labels(m)
        self.ttft = Histogram(
            "sglang:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=reg,
        ).labels(m)
        self.e2e = Histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            labels,
            buckets=E2E_BUCKETS,
            registry=reg,
        ).labels(m)
        self.tpot = Histogram(
            "sglang:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            labels,
            buckets=TPOT_BUCKETS,
            registry=reg,
        ).labels(m)
        self.func_latency = Histogram(
            "sglang:func_latency_seconds",
            "Function latency in seconds",
            ("name",),
            buckets=FUNC_BUCKETS,
            registry=reg,
        ).labels("generate_request")
        self.running = Gauge(
            "sglang:num_running_reqs", "The number of running requests", labels, registry=reg
        ).labels(m)
        self.used_tokens = Gauge(
            "sglang:num_used_tokens", "The number of used tokens", labels, registry=reg
        ).labels(m)
        self.throughput = Gauge(
            "sglang:gen_throughput", "The generate throughput (token/s)", labels, registry=reg
        ).labels(m)
        self.queue = Gauge(
            "sglang:num_queue_reqs",
            "The number of requests in the waiting queue",
            labels,
            registry=reg,
        ).labels(m)
        # Recent (time, generated tokens) and (prompt, cached) for the engine-computed gauges.
        self._recent_tokens: list[tuple[float, int]] = []
        self._recent_prompts: list[tuple[float, int, int]] = []
        sim.subscribe(self)

    def arrived(self, req: Request) -> None:
        self.func_latency.observe(GENERATE_REQUEST_SECONDS)

    def stepped(self, step: Step) -> None:
        for req in step.first_tokens:
            self.prompt_tokens.inc(req.prompt_tokens)
            ttft = req.ttft()
            if ttft is not None:
                self.ttft.observe(ttft)
            self._recent_prompts.append((step.end, req.prompt_tokens, req.cached_tokens))
        if step.tokens:
            self.generation_tokens.inc(len(step.tokens))
            self._recent_tokens.append((step.end, len(step.tokens)))
            for _req, gap in step.tokens:
                if gap is not None:
                    self.tpot.observe(gap)

    def finished(self, req: Request) -> None:
        if req.finish_reason != "abort" and req.finished_at is not None:
            self.e2e.observe(req.e2e())

    def observe_http(self, *_args: object) -> None:
        """SGLang's page has no HTTP metrics."""

    def render(self) -> bytes:
        engines = self.sim.engines
        now = self.sim.now
        since = now - THROUGHPUT_WINDOW
        self._recent_tokens = [(t, n) for t, n in self._recent_tokens if t >= since]
        self._recent_prompts = [p for p in self._recent_prompts if p[0] >= since]
        self.running.set(sum(e.num_running for e in engines))
        self.queue.set(sum(e.num_waiting for e in engines))
        self.used_tokens.set(
            sum((e.config.num_blocks - e.free_blocks) * e.config.block_size for e in engines)
        )
        self.token_usage.set(round(sum(e.kv_usage for e in engines) / len(engines), 2))
        self.throughput.set(sum(n for _t, n in self._recent_tokens) / THROUGHPUT_WINDOW)
        prompts = sum(p for _t, p, _c in self._recent_prompts)
        cached = sum(c for _t, _p, c in self._recent_prompts)
        self.cache_hit_rate.set(cached / prompts if prompts else 0.0)
        text = generate_latest(self.registry).decode()
        # SGLang runs prometheus_client in multiprocess mode, which prints no `_created`.
        lines = [line for line in text.split("\n") if "_created" not in line]
        return "\n".join(lines).encode()
