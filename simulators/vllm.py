"""vLLM V1 (0.32) `/metrics`, rendered from the queueing model.

The families, types, label names, HELP texts and bucket boundaries are those of the real
capture `tests/fixtures/upstream/vllm-0.32.0-cpu-tiny-real.prom`; like vLLM, the page is built
with `prometheus_client` (so `_created` samples, `_total` suffixes and label order match), and
every engine-core rank gets its own `engine` label value under data parallelism. Sample:

    vllm:num_requests_running{engine="0",model_name="llama-3.1-8b"} 41.0
    vllm:kv_cache_usage_perc{engine="0",model_name="llama-3.1-8b"} 0.9375
    vllm:request_success_total{engine="0",finished_reason="stop",model_name="llama-3.1-8b"} 517.0
    vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="llama-3.1-8b"} 498.0

What the model cannot know is reported the way an idle feature reports it in vLLM: multimodal
and external (KV-connector) caches stay at zero, the engine is always awake, no request is
deferred. FLOP and byte counters use the simple estimates of a dense model (2 FLOPs per
parameter per token; weights and attended KV read once per step).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from inferwatch.simulators.model import (
    REFUSED_QUEUE_FULL,
    Observer,
    Request,
    Simulation,
    Step,
)

VERSION = "0.32.0"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# vllm/v1/metrics: default histogram boundaries (see shared/research/engine-metrics.md, 1a).
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_TIME_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PARAMS_N_BUCKETS = (1, 2, 5, 10, 20)
PREEMPTION_BUCKETS = (1, 2, 3, 4, 5, 10, 20)
# prometheus_fastapi_instrumentator's defaults, as vLLM's API server uses them.
HTTP_HIGHR_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
HTTP_BUCKETS = (0.1, 0.5, 1.0)

FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
CACHE_TIERS = ("device", "host", "p2p", "disk", "external_unspecified")
REJECTION_REASONS = ("max_num_queued_reqs", "max_num_queued_tokens")
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")


def token_buckets(max_model_len: int) -> tuple[int, ...]:
    """vLLM's 1-2-5 series up to the model's context length (`build_1_2_5_buckets`)."""
    out: list[int] = []
    magnitude = 1
    while True:
        for m in (1, 2, 5):
            value = m * magnitude
            if value > max_model_len:
                return tuple(out)
            out.append(value)
        magnitude *= 10


def http_status(code: int) -> str:
    return f"{code // 100}xx"


class VllmWriter(Observer):
    """Renders a simulation as vLLM V1's `/metrics` page."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model_name: str):
        self.sim = sim
        self.model_name = model_name
        cfg = sim.config
        reg = self.registry = CollectorRegistry()
        GCCollector(registry=reg)
        PlatformCollector(registry=reg)
        ProcessCollector(registry=reg)
        labels = ("model_name", "engine")

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(name, doc, (*labels, *extra), registry=reg)

        def gauge(name: str, doc: str, *extra: str) -> Gauge:
            return Gauge(name, doc, (*labels, *extra), registry=reg)

        def histogram(name: str, doc: str, buckets) -> Histogram:
            return Histogram(name, doc, labels, registry=reg, buckets=buckets)

        mfu = " per GPU (for Model Flops Utilization calculations)."
        self.flops = counter(
            "vllm:estimated_flops_per_gpu", "Estimated number of floating point operations" + mfu
        )
        self.read_bytes = counter(
            "vllm:estimated_read_bytes_per_gpu", "Estimated number of bytes read from memory" + mfu
        )
        self.write_bytes = counter(
            "vllm:estimated_write_bytes_per_gpu",
            "Estimated number of bytes written to memory" + mfu,
        )
        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.waiting_by_reason = gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for "
            "scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, "
            "KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            "reason",
        )
        self.sleep_state = gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
            "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep "
            "level 2.",
            "sleep_state",
        )
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        )
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        )
        external = "External prefix cache {} from KV connector cross-instance cache sharing, "
        self.external_queries = counter(
            "vllm:external_prefix_cache_queries",
            external.format("queries") + "in terms of number of queried tokens.",
        )
        self.external_hits = counter(
            "vllm:external_prefix_cache_hits",
            external.format("hits") + "in terms of number of cached tokens.",
        )
        self.mm_queries = counter(
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
        )
        self.mm_hits = counter(
            "vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.prompt_by_source = counter(
            "vllm:prompt_tokens_by_source", "Number of prompt tokens by source.", "source"
        )
        self.prompt_cached = counter(
            "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."
        )
        self.prompt_cached_by_source = counter(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), "
            "host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
            "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
            "vllm:external_prefix_cache_hits.",
            "source",
        )
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        self.success = counter(
            "vllm:request_success", "Count of successfully processed requests.", "finished_reason"
        )
        self.rejections = Counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            ("model_name", "reason"),
            registry=reg,
        )
        lengths = token_buckets(cfg.max_model_len)
        self.h_prompt = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", lengths
        )
        self.h_generation = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", lengths
        )
        self.h_iteration = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            ITERATION_TOKEN_BUCKETS,
        )
        self.h_max_generation = histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            lengths,
        )
        self.h_params_n = histogram(
            "vllm:request_params_n", "Histogram of the n request parameter.", PARAMS_N_BUCKETS
        )
        self.h_params_max_tokens = histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            lengths,
        )
        self.h_ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.h_itl = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        )
        self.h_tpot = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.h_e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_TIME_BUCKETS,
        )
        phase = "Histogram of time spent in {} phase for request."
        self.h_queue = histogram(
            "vllm:request_queue_time_seconds", phase.format("WAITING"), REQUEST_TIME_BUCKETS
        )
        self.h_inference = histogram(
            "vllm:request_inference_time_seconds", phase.format("RUNNING"), REQUEST_TIME_BUCKETS
        )
        self.h_prefill = histogram(
            "vllm:request_prefill_time_seconds", phase.format("PREFILL"), REQUEST_TIME_BUCKETS
        )
        self.h_decode = histogram(
            "vllm:request_decode_time_seconds", phase.format("DECODE"), REQUEST_TIME_BUCKETS
        )
        self.h_preemptions = histogram(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            PREEMPTION_BUCKETS,
        )
        self.h_kv_computed = histogram(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            lengths,
        )
        # vLLM states its cache configuration per engine core, without a model_name label.
        self.cache_config = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            ("engine", *cache_config_labels(sim)),
            registry=reg,
        )
        self._http(reg)
        self._children(sim)
        sim.subscribe(self)

    def _http(self, reg: CollectorRegistry) -> None:
        note = "Only value of header is respected. Otherwise ignored. No percentile calculated. "
        self.http_requests = Counter(
            "http_requests",
            "Total number of requests by method, status and handler.",
            ("handler", "method", "status"),
            registry=reg,
        )
        self.http_request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. " + note,
            ("handler",),
            registry=reg,
        )
        self.http_response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. " + note,
            ("handler",),
            registry=reg,
        )
        self.http_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate "
            "percentile calculations. ",
            registry=reg,
            buckets=HTTP_HIGHR_BUCKETS,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by "
            "handler is important. ",
            ("handler", "method"),
            registry=reg,
            buckets=HTTP_BUCKETS,
        )

    def _children(self, sim: Simulation) -> None:
        """Create every labelled series at start, as vLLM does, so none appears late."""
        m = self.model_name
        for reason in REJECTION_REASONS:
            self.rejections.labels(m, reason)
        for engine in sim.engines:
            e = str(engine.rank)
            for metric in (
                self.flops,
                self.read_bytes,
                self.write_bytes,
                self.prefix_queries,
                self.prefix_hits,
                self.external_queries,
                self.external_hits,
                self.mm_queries,
                self.mm_hits,
                self.preemptions,
                self.prompt_tokens,
                self.prompt_cached,
                self.generation_tokens,
                self.h_prompt,
                self.h_generation,
                self.h_iteration,
                self.h_max_generation,
                self.h_params_n,
                self.h_params_max_tokens,
                self.h_ttft,
                self.h_itl,
                self.h_tpot,
                self.h_e2e,
                self.h_queue,
                self.h_inference,
                self.h_prefill,
                self.h_decode,
                self.h_preemptions,
                self.h_kv_computed,
            ):
                metric.labels(m, e)
            for source in PROMPT_SOURCES:
                self.prompt_by_source.labels(m, e, source)
            for tier in CACHE_TIERS:
                self.prompt_cached_by_source.labels(m, e, tier)
            for reason in FINISHED_REASONS:
                self.success.labels(m, e, reason)
            for state in SLEEP_STATES:
                self.sleep_state.labels(m, e, state).set(1 if state == "awake" else 0)
            self.cache_config.labels(e, *cache_config_labels(sim).values()).set(1)

    # -- the model's events -------------------------------------------------------------------

    def refused(self, req: Request, reason: str) -> None:
        if reason == REFUSED_QUEUE_FULL:
            self.rejections.labels(self.model_name, "max_num_queued_reqs").inc()

    def stepped(self, step: Step) -> None:
        m, e = self.model_name, str(step.rank)
        cfg = self.sim.config
        tokens = step.tokens_scheduled
        self.h_iteration.labels(m, e).observe(tokens)
        self.flops.labels(m, e).inc(2 * cfg.params * tokens)
        self.read_bytes.labels(m, e).inc(
            2 * cfg.params + cfg.kv_bytes_per_token * step.context_tokens
        )
        self.write_bytes.labels(m, e).inc(cfg.kv_bytes_per_token * tokens)
        if step.preempted:
            self.preemptions.labels(m, e).inc(len(step.preempted))
        for req in step.new:
            self.prefix_queries.labels(m, e).inc(req.prompt_tokens)
            if req.cached_tokens:
                self.prefix_hits.labels(m, e).inc(req.cached_tokens)
                self.prompt_cached.labels(m, e).inc(req.cached_tokens)
                self.prompt_cached_by_source.labels(m, e, "device").inc(req.cached_tokens)
        for req in step.first_tokens:
            self.prompt_tokens.labels(m, e).inc(req.prompt_tokens)
            self.prompt_by_source.labels(m, e, "local_compute").inc(
                req.prompt_tokens - req.cached_tokens
            )
            self.prompt_by_source.labels(m, e, "local_cache_hit").inc(req.cached_tokens)
            self.h_ttft.labels(m, e).observe(req.ttft())
        if step.tokens:
            self.generation_tokens.labels(m, e).inc(len(step.tokens))
            itl = self.h_itl.labels(m, e)
            for _req, gap in step.tokens:
                if gap is not None:
                    itl.observe(gap)

    def finished(self, req: Request) -> None:
        m, e = self.model_name, str(req.rank)
        self.success.labels(m, e, req.finish_reason).inc()
        if req.source == "synthetic" and req.finish_reason != "abort":
            self._synthetic_http(req)
        if req.scheduled_at is None:
            return  # aborted while queued: the engine core never saw it
        assert req.finished_at is not None
        self.h_e2e.labels(m, e).observe(req.e2e())
        self.h_queue.labels(m, e).observe(req.scheduled_at - req.arrival)
        self.h_inference.labels(m, e).observe(req.finished_at - req.scheduled_at)
        first = req.first_token_at if req.first_token_at is not None else req.finished_at
        self.h_prefill.labels(m, e).observe(first - req.scheduled_at)
        self.h_decode.labels(m, e).observe(req.finished_at - first)
        tpot = req.time_per_output_token()
        if tpot is not None:
            self.h_tpot.labels(m, e).observe(tpot)
        self.h_prompt.labels(m, e).observe(req.prompt_tokens)
        self.h_generation.labels(m, e).observe(req.output_tokens)
        self.h_max_generation.labels(m, e).observe(req.max_tokens)
        self.h_params_max_tokens.labels(m, e).observe(req.max_tokens)
        self.h_params_n.labels(m, e).observe(1)
        self.h_preemptions.labels(m, e).observe(req.preemptions)
        self.h_kv_computed.labels(m, e).observe(req.prompt_tokens - req.cached_tokens)

    def _synthetic_http(self, req: Request) -> None:
        """Synthetic clients reach vLLM through its API server like any other."""
        status = 500 if req.finish_reason == "error" else 200
        # Sizes of a JSON completion request and answer: ~4 bytes a token plus the envelope.
        self.observe_http(
            req.endpoint,
            "POST",
            status,
            req.e2e(),
            200 + 4 * req.prompt_tokens,
            350 + 5 * req.output_tokens,
        )

    def observe_http(
        self,
        handler: str,
        method: str,
        status: int,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One API request, as prometheus_fastapi_instrumentator records it."""
        self.http_requests.labels(handler, method, http_status(status)).inc()
        self.http_request_size.labels(handler).observe(request_bytes)
        self.http_response_size.labels(handler).observe(response_bytes)
        self.http_highr.observe(seconds)
        self.http_duration.labels(handler, method).observe(seconds)

    # -- the page -----------------------------------------------------------------------------

    def render(self) -> bytes:
        m = self.model_name
        for engine in self.sim.engines:
            e = str(engine.rank)
            self.running.labels(m, e).set(engine.num_running)
            self.waiting.labels(m, e).set(engine.num_waiting)
            self.waiting_by_reason.labels(m, e, "capacity").set(engine.num_waiting)
            self.waiting_by_reason.labels(m, e, "deferred").set(0)
            self.kv_usage.labels(m, e).set(engine.kv_usage)
        return generate_latest(self.registry)


def cache_config_labels(sim: Simulation) -> dict[str, str]:
    """`vllm:cache_config_info` labels beside `engine`, as vLLM 0.32 states them."""
    cfg = sim.config
    blocks = cfg.num_blocks
    tokens = blocks * cfg.block_size
    return {
        "_block_size_resolved": "True",
        "block_size": str(cfg.block_size),
        "cache_dtype": "auto",
        "cache_hit_alignment_tokens": "None",
        "effective_attention_block_size": str(cfg.block_size),
        "enable_mamba_shared_prefix_checkpoint": "False",
        "enable_prefix_caching": str(cfg.prefix_caching),
        "gpu_memory_utilization": str(cfg.gpu_memory_utilization),
        "hash_block_size": "None",
        "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_layout": "None",
        "kv_cache_max_concurrency": str(tokens / cfg.max_model_len),
        "kv_cache_memory_bytes": str(tokens * cfg.kv_bytes_per_token),
        "kv_cache_size_tokens": str(tokens),
        "kv_offloading_backend": "native",
        "kv_offloading_size": "None",
        "kv_sharing_fast_prefill": "False",
        "mamba_block_size": "None",
        "mamba_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "mamba_page_size_padded": "None",
        "mamba_ssm_cache_dtype": "float32",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": str(blocks),
        "num_gpu_blocks_override": "None",
        "prefix_cache_retention_interval": "0",
        "prefix_caching_hash_algo": "sha256",
        "prefix_match_unit": "None",
        "replayssm_buffer_len": "16",
        "skip_page_size_padded": "None",
        "sliding_window": "None",
        "swa_bounded_replay": "True",
        "use_kda_recoverssm": "False",
        "use_replayssm": "False",
        "user_specified_block_size": "False",
    }
