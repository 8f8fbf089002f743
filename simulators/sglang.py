"""SGLang `/metrics`, rendered from the queueing model: the docs-era page and SGLang 0.5.x.

`SglangWriter` is the docs-era collector, with the families, types, labels, HELP texts and
bucket boundaries of the real capture
`tests/fixtures/upstream/sglang-docs-production_metrics-00b08c49.prom`: one `model_name` label,
`time_per_output_token_seconds` observed per token, and the tokenizer's
`func_latency_seconds{name="generate_request"}`. Sample:

    sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 41.0
    sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.62

This format has no rank labels: with several simulated ranks, request counts add up and the
token usage is their mean, as one scheduler over all of them would see it.

`Sglang05Writer` is SGLang 0.5.x (`srt/observability/metrics_collector.py`, the families of
`tests/fixtures/engines/sglang-0.5-dp2-pp2.prom`): one scheduler per data-parallel rank,
labelled `tp_rank`, `pp_rank`, `moe_ep_rank`, `priority` (the total, `""`) and `dp_rank`; the
tokenizer's figures with `engine_type` and, on some, `is_streaming`; finished and aborted
request counters, retractions, queue time, inter-token latency and per-request TPOT. Sample:

    sglang:num_queue_reqs{dp_rank="1",engine_type="unified",model_name="m",...} 12.0
    sglang:num_requests_total{engine_type="unified",is_streaming="true",model_name="m"} 940.0

Like SGLang, both pages are built with prometheus_client in multiprocess mode, which prints no
`_created` series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from inferwatch.simulators.model import Observer, Request, Simulation, Step

VERSION = "0.4.0"
VERSION_05 = "0.5.2"
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
        return _without_created(self.registry)


def _without_created(registry: CollectorRegistry) -> bytes:
    """The page as SGLang serves it: prometheus_client's multiprocess mode prints no `_created`."""
    text = generate_latest(registry).decode()
    return "\n".join(line for line in text.split("\n") if "_created" not in line).encode()


# fmt: off
# SGLang 0.5.x boundaries (`metrics_collector.py`).
TTFT_BUCKETS_05 = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
E2E_BUCKETS_05 = (*TTFT_BUCKETS_05, 600, 1200, 1800, 2400)
TOKEN_BUCKETS_05 = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04,
                    0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0)
QUEUE_BUCKETS_05 = (0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30,
                    40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000,
                    1200, 1400, 1600, 1800, 2000, 2500, 3000)
# fmt: on
ENGINE_TYPE = "unified"  # neither prefill nor decode of a disaggregated pair
SCHEDULER_LABELS = (
    "model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank", "priority", "dp_rank",
)  # fmt: skip
TOKENIZER_LABELS = ("model_name", "engine_type")


def _streaming(req: Request) -> str:
    return "true" if req.stream else "false"


class Sglang05Writer(Observer):
    """Renders a simulation as SGLang 0.5.x's `/metrics` page, one scheduler per rank."""

    version = VERSION_05
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model_name: str):
        self.sim = sim
        self.model_name = model_name
        reg = self.registry = CollectorRegistry()
        sched, tok = SCHEDULER_LABELS, TOKENIZER_LABELS
        streamed = (*tok, "is_streaming")

        def gauge(name: str, help_: str) -> Gauge:
            return Gauge(name, help_, sched, registry=reg)

        self.running = gauge("sglang:num_running_reqs", "The number of running requests.")
        self.queue = gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.")
        self.token_usage = gauge("sglang:token_usage", "The token usage.")
        self.cache_hit_rate = gauge("sglang:cache_hit_rate", "The prefix cache hit rate.")
        self.throughput = gauge("sglang:gen_throughput", "The generation throughput (token/s).")
        self.capacity = gauge(
            "sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool."
        )
        self.retracted_now = gauge("sglang:num_retracted_reqs", "The number of retracted requests.")
        self.retracted = Counter(
            "sglang:num_retracted_requests",
            "Total number of retracted requests.",
            sched,
            registry=reg,
        )
        self.queue_time = Histogram(
            "sglang:queue_time_seconds",
            "Histogram of queueing time in seconds.",
            sched,
            buckets=QUEUE_BUCKETS_05,
            registry=reg,
        )
        self.prompt_tokens = Counter(
            "sglang:prompt_tokens", "Number of prefill tokens processed.", streamed, registry=reg
        )
        self.generation_tokens = Counter(
            "sglang:generation_tokens",
            "Number of generation tokens processed.",
            streamed,
            registry=reg,
        )
        self.cached_tokens = Counter(
            "sglang:cached_tokens",
            "Number of cached prompt tokens by source (device/host/storage).",
            (*tok, "cache_source"),
            registry=reg,
        )
        self.requests = Counter(
            "sglang:num_requests", "Number of requests processed.", streamed, registry=reg
        )
        self.aborted = Counter(
            "sglang:num_aborted_requests", "Number of requests aborted.", tok, registry=reg
        )
        self.ttft = Histogram(
            "sglang:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            streamed,
            buckets=TTFT_BUCKETS_05,
            registry=reg,
        )
        self.itl = Histogram(
            "sglang:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            tok,
            buckets=TOKEN_BUCKETS_05,
            registry=reg,
        )
        self.tpot = Histogram(
            "sglang:request_time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            streamed,
            buckets=TOKEN_BUCKETS_05,
            registry=reg,
        )
        self.e2e = Histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            streamed,
            buckets=E2E_BUCKETS_05,
            registry=reg,
        )
        # Series SGLang creates at start: every rank's scheduler, and the aborted counter.
        for e in sim.engines:
            self.retracted.labels(*self._scheduler(e.rank))
            self.queue_time.labels(*self._scheduler(e.rank))
        self.aborted.labels(model_name, ENGINE_TYPE)
        # Per rank: recent (time, generated tokens) and (time, prompt, cached).
        self._recent_tokens: dict[int, list[tuple[float, int]]] = {}
        self._recent_prompts: dict[int, list[tuple[float, int, int]]] = {}
        sim.subscribe(self)

    def _scheduler(self, rank: int) -> tuple[str, ...]:
        return (self.model_name, ENGINE_TYPE, "0", "0", "0", "", str(rank))

    def _tokenizer(self, req: Request) -> tuple[str, ...]:
        return (self.model_name, ENGINE_TYPE, _streaming(req))

    def stepped(self, step: Step) -> None:
        sched = self._scheduler(step.rank)
        for req in step.new:
            assert req.scheduled_at is not None
            self.queue_time.labels(*sched).observe(req.scheduled_at - req.arrival)
        if step.preempted:
            self.retracted.labels(*sched).inc(len(step.preempted))
        for req in step.first_tokens:
            self.prompt_tokens.labels(*self._tokenizer(req)).inc(req.prompt_tokens)
            if req.cached_tokens:
                self.cached_tokens.labels(self.model_name, ENGINE_TYPE, "device").inc(
                    req.cached_tokens
                )
            ttft = req.ttft()
            if ttft is not None:
                self.ttft.labels(*self._tokenizer(req)).observe(ttft)
            self._recent_prompts.setdefault(step.rank, []).append(
                (step.end, req.prompt_tokens, req.cached_tokens)
            )
        for req, gap in step.tokens:
            self.generation_tokens.labels(*self._tokenizer(req)).inc()
            if gap is not None:
                self.itl.labels(self.model_name, ENGINE_TYPE).observe(gap)
        if step.tokens:
            self._recent_tokens.setdefault(step.rank, []).append((step.end, len(step.tokens)))

    def finished(self, req: Request) -> None:
        # SGLang ends a failed request with an abort finish reason: both count as aborted.
        if req.finish_reason in ("abort", "error"):
            self.aborted.labels(self.model_name, ENGINE_TYPE).inc()
            return
        labels = self._tokenizer(req)
        self.requests.labels(*labels).inc()
        self.e2e.labels(*labels).observe(req.e2e())
        tpot = req.time_per_output_token()
        if tpot is not None and req.output_tokens > 1:
            self.tpot.labels(*labels).observe(tpot)

    def observe_http(self, *_args: object) -> None:
        """SGLang's page has no HTTP metrics."""

    def render(self) -> bytes:
        since = self.sim.now - THROUGHPUT_WINDOW
        for e in self.sim.engines:
            sched = self._scheduler(e.rank)
            tokens = [x for x in self._recent_tokens.get(e.rank, []) if x[0] >= since]
            prompts = [x for x in self._recent_prompts.get(e.rank, []) if x[0] >= since]
            self._recent_tokens[e.rank], self._recent_prompts[e.rank] = tokens, prompts
            self.running.labels(*sched).set(e.num_running)
            self.queue.labels(*sched).set(e.num_waiting)
            self.token_usage.labels(*sched).set(round(e.kv_usage, 2))
            self.throughput.labels(*sched).set(sum(n for _t, n in tokens) / THROUGHPUT_WINDOW)
            prompted = sum(p for _t, p, _c in prompts)
            cached = sum(c for _t, _p, c in prompts)
            self.cache_hit_rate.labels(*sched).set(cached / prompted if prompted else 0.0)
            self.capacity.labels(*sched).set(e.config.num_blocks * e.config.block_size)
            self.retracted_now.labels(*sched).set(0)
        return _without_created(self.registry)
