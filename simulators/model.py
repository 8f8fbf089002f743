"""A continuous-batching LLM engine as a small discrete-event queueing model.

Requests arrive (a Poisson process whose rate follows a load profile, plus whatever callers
submit), wait in a FCFS queue, and are scheduled into a running batch of at most
`max_num_seqs` sequences whose KV cache lives in `kv_cache_tokens / block_size` blocks. Each
engine step computes prompt tokens (prefill, chunked or whole) and one token for every decoding
sequence; its duration grows with the tokens computed and the context attended to. A token is
emitted when a sequence has computed everything it holds. Two KV policies cover the engines:

- incremental (vLLM V1): blocks are taken as sequences grow; when none is free, the most
  recently scheduled sequence is preempted, loses its KV cache, returns to the head of the queue
  and is recomputed later;
- reserve-full (TGI v3): a request is admitted only when blocks for its prompt *and* its
  `max_tokens` are free, so nothing is ever preempted and the queue absorbs the pressure.

Requests finish by `stop` (the model's own end of sequence), `length` (`max_tokens`), `abort`
(the client gave up) or `error`. Everything advances on an injectable clock: `step(dt)` is
exact and deterministic for a seed, and `Realtime` drives the same model on the event loop's
clock for servers. Writers (one per engine's /metrics format) subscribe as `Observer`s and read
the gauges; the model knows no metric names.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

INF = math.inf

# Why a request was refused before entering the queue.
REFUSED_VALIDATION = "validation"  # longer than the model's context
REFUSED_QUEUE_FULL = "queue_full"  # the waiting queue is at its limit (vLLM max_num_queued_reqs)
REFUSED_OVERLOADED = "overloaded"  # too many requests in flight (TGI max_concurrent_requests)

FINISH_REASONS = ("stop", "length", "abort", "error")

# Time constant of the utilization average (DCGM reports a short moving average too).
UTILIZATION_TAU = 1.0


@dataclass(frozen=True)
class EngineConfig:
    """Capacity and speed of one engine instance (one data-parallel rank)."""

    max_num_seqs: int = 64
    kv_cache_tokens: int = 32768
    block_size: int = 16
    # Per-step token budget. With chunked prefill (vLLM V1) it is shared by decodes and prompt
    # chunks; without (TGI) it bounds the prompt tokens of the requests joining the batch.
    max_num_batched_tokens: int = 4096
    max_model_len: int = 8192
    chunked_prefill: bool = True
    # TGI v3 reserves blocks for prompt + max_tokens at admission and never preempts.
    reserve_full: bool = False
    prefix_caching: bool = True
    # TGI: a new batch joins a running one only when the queue holds at least this fraction of
    # the running batch, or after `max_waiting_steps` steps without admitting anyone.
    waiting_served_ratio: float = 0.0
    max_waiting_steps: int = 0
    max_waiting: int | None = None  # refuse arrivals while this many requests wait
    max_in_flight: int | None = None  # refuse arrivals while this many are waiting or running
    # Step time = overhead + per decoding sequence + per prompt token + per attended token.
    step_overhead: float = 0.012
    decode_per_seq: float = 0.0004
    prefill_per_token: float = 0.0001
    attention_per_token: float = 1.5e-7
    # Size of the model, for the engines' FLOP and byte estimates; share of GPU memory the
    # engine claims at start (weights, KV cache, activations), which DCGM reports as used.
    params: float = 8.0e9
    kv_bytes_per_token: int = 131072
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        for name in (
            "max_num_seqs",
            "kv_cache_tokens",
            "block_size",
            "max_num_batched_tokens",
            "max_model_len",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"engine config: {name} must be at least 1")
        if self.kv_cache_tokens < self.block_size:
            raise ValueError("engine config: kv_cache_tokens is smaller than one block")
        if self.max_model_len > self.num_blocks * self.block_size:
            raise ValueError(
                f"engine config: max_model_len {self.max_model_len} does not fit the KV cache "
                f"({self.num_blocks * self.block_size} tokens); one request could never run"
            )
        if not self.chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                "engine config: without chunked prefill, max_num_batched_tokens "
                "must hold a whole prompt (at least max_model_len)"
            )
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("engine config: gpu_memory_utilization must be in (0, 1]")
        if (
            min(
                self.step_overhead,
                self.decode_per_seq,
                self.prefill_per_token,
                self.attention_per_token,
            )
            < 0
            or self.step_overhead <= 0
        ):
            raise ValueError("engine config: step times must be positive")

    @property
    def num_blocks(self) -> int:
        return self.kv_cache_tokens // self.block_size

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)


@dataclass(eq=False)
class Request:
    """One request and, as it runs, everything the engines measure about it."""

    id: str
    prompt_tokens: int
    max_tokens: int
    stop_at: int  # output tokens the model produces before its end-of-sequence token
    arrival: float
    deadline: float = INF  # the client gives up (aborts) at this time
    fail_at: int | None = None  # an engine error ends the request after this many tokens
    prefix_share: float = 0.0  # fraction of the prompt already in the prefix cache
    source: str = "synthetic"  # "synthetic" (the arrival profile) or "http"
    endpoint: str = "/v1/completions"
    stream: bool = True  # answered token by token (SGLang counts the two kinds apart)
    # Called with (request, event) on "token" and "finished": how a server streams it.
    listener: Callable[[Request, str], None] | None = None
    rank: int = 0
    state: str = "new"  # new, waiting, running, finished, refused
    computed: int = 0  # tokens whose KV is in the cache
    output_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens found in the prefix cache
    blocks: int = 0
    preemptions: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None

    @property
    def in_prefill(self) -> bool:
        """Still computing its prompt (or recomputing after a preemption)."""
        return self.computed < self.prompt_tokens + self.output_tokens - (self.output_tokens > 0)

    def to_compute(self) -> int:
        return self.prompt_tokens + self.output_tokens - self.computed

    def e2e(self) -> float:
        assert self.finished_at is not None
        return self.finished_at - self.arrival

    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    def time_per_output_token(self) -> float | None:
        """Mean time between output tokens after the first, as vLLM reports it per request."""
        if self.first_token_at is None or self.finished_at is None:
            return None
        if self.output_tokens < 2:
            return 0.0
        return (self.finished_at - self.first_token_at) / (self.output_tokens - 1)


@dataclass
class Step:
    """One engine iteration, reported to observers when it ends."""

    rank: int
    start: float
    end: float
    prefill_tokens: int = 0  # prompt tokens computed (including recomputation)
    decode_seqs: int = 0  # sequences that decoded one token
    prefill_seconds: float = 0.0  # the step's time split into its prefill and decode parts
    decode_seconds: float = 0.0
    context_tokens: int = 0  # tokens attended to
    new: list[Request] = field(default_factory=list)  # scheduled for the first time
    resumed: list[Request] = field(default_factory=list)  # rescheduled after a preemption
    preempted: list[Request] = field(default_factory=list)
    first_tokens: list[Request] = field(default_factory=list)
    # Every token emitted, with the time since the same request's previous token.
    tokens: list[tuple[Request, float | None]] = field(default_factory=list)
    failed: list[Request] = field(default_factory=list)
    # Set when queued requests joined a batch already running: "backpressure" (the queue was
    # long enough) or "wait_exceeded" (`max_waiting_steps` passed), TGI's two reasons.
    concat: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def tokens_scheduled(self) -> int:
        return self.prefill_tokens + self.decode_seqs


class Observer:
    """What an engine's metrics writer hears from the model. Every method is optional."""

    def arrived(self, req: Request) -> None:
        """A request passed validation and entered the queue."""

    def refused(self, req: Request, reason: str) -> None:
        """A request was refused before the queue (`REFUSED_*`)."""

    def stepped(self, step: Step) -> None:
        """An engine step ended."""

    def finished(self, req: Request) -> None:
        """A request finished (any reason, including aborts while queued)."""


class Engine:
    """One engine instance: a waiting queue, a running batch, a KV cache, a clock."""

    def __init__(self, config: EngineConfig, observers: list[Observer], rank: int = 0):
        self.config = config
        self.rank = rank
        self.observers = observers
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.free_blocks = config.num_blocks
        self.clock = 0.0
        self.busy_seconds = 0.0
        self._step: Step | None = None
        self._scheduled: list[tuple[Request, int]] = []
        self._steps_since_admission = 0
        self._utilization = 0.0
        self._utilization_at = 0.0
        self._prefill_share = 0.0

    # -- state --------------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def in_flight(self) -> int:
        return len(self.running) + len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.config.num_blocks

    @property
    def reserved_tokens(self) -> int:
        """Prompt plus max_tokens of the running batch: TGI's `batch.max_tokens`."""
        return sum(r.prompt_tokens + r.max_tokens for r in self.running)

    def utilization(self) -> float:
        """Busy fraction, averaged over about `UTILIZATION_TAU` seconds."""
        return self._utilization

    def prefill_share(self) -> float:
        """Recent share of step time spent on prompts (compute-bound) rather than decoding."""
        return self._prefill_share

    def next_event_time(self) -> float:
        return self._step.end if self._step is not None else INF

    # -- requests -----------------------------------------------------------------------------

    def refusal(self, req: Request) -> str | None:
        """Why this engine refuses `req` now, or None."""
        c = self.config
        if (
            req.prompt_tokens < 1
            or req.max_tokens < 1
            or (req.prompt_tokens + req.max_tokens > c.max_model_len)
        ):
            return REFUSED_VALIDATION
        if c.max_in_flight is not None and self.in_flight >= c.max_in_flight:
            return REFUSED_OVERLOADED
        if c.max_waiting is not None and self.num_waiting >= c.max_waiting:
            return REFUSED_QUEUE_FULL
        return None

    def enqueue(self, req: Request) -> None:
        req.rank = self.rank
        req.state = "waiting"
        self.waiting.append(req)
        for o in self.observers:
            o.arrived(req)
        if self._step is None:
            self._start_step()

    def abort(self, req: Request, now: float) -> None:
        """The client went away: free what the request holds and finish it as `abort`."""
        if req.state == "waiting":
            self.waiting.remove(req)
        elif req.state == "running":
            self.running.remove(req)
            self.free_blocks += req.blocks
            req.blocks = 0
        else:
            return
        self._finish(req, "abort", now)

    # -- time ---------------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Run every step that ends by `t`; a step in progress continues past it."""
        while self._step is not None and self._step.end <= t:
            self._end_step()
            self._start_step()
        if self._step is None:
            self._decay_utilization(t)
        self.clock = max(self.clock, t)

    def _decay_utilization(self, t: float) -> None:
        if t > self._utilization_at:
            self._utilization *= math.exp(-(t - self._utilization_at) / UTILIZATION_TAU)
            self._utilization_at = t

    def _expire(self, now: float) -> None:
        """Clients whose patience ran out abort, whether queued or running."""
        for queue in (self.waiting, self.running):
            if any(r.deadline <= now for r in queue):
                for r in [r for r in queue if r.deadline <= now]:
                    self.abort(r, now)

    def _start_step(self) -> None:
        now = self.clock
        self._expire(now)
        if not self.waiting and not self.running:
            return
        c = self.config
        step = Step(self.rank, now, now)
        scheduled: list[tuple[Request, int]] = []
        budget = c.max_num_batched_tokens
        # Running sequences first, in scheduling order; preempt from the back when out of KV.
        i = 0
        while i < len(self.running):
            req = self.running[i]
            chunk = req.to_compute()
            if c.chunked_prefill:
                chunk = min(chunk, budget)
                if chunk <= 0:
                    break
            if not c.reserve_full:
                need = c.blocks_for(req.computed + chunk) - req.blocks
                while need > self.free_blocks:
                    victim = self.running.pop()
                    self._preempt(victim, step)
                    if victim is req:
                        break
                if req.state != "running":
                    break
                if need > 0:
                    self.free_blocks -= need
                    req.blocks += need
            scheduled.append((req, chunk))
            if c.chunked_prefill:
                budget -= chunk
            i += 1
        running_before = len(scheduled)
        # Like vLLM V1, a step that had to preempt admits nobody (unless nothing else runs).
        admission = self._admission(running_before)
        if admission is not None and (not step.preempted or not scheduled):
            self._admit(step, scheduled, budget)
        if step.new or step.resumed:
            self._steps_since_admission = 0
            if admission != "idle":
                step.concat = admission
        else:
            self._steps_since_admission += 1
        if not scheduled:
            return
        self._scheduled = scheduled
        self._time_step(step, scheduled)
        self._step = step

    def _admission(self, running: int) -> str | None:
        """Whether the queue may join the batch this step, and why (TGI's batching rule)."""
        c = self.config
        if not self.waiting or running >= c.max_num_seqs:
            return None
        if running == 0:
            return "idle"
        if c.max_waiting_steps > 0 and self._steps_since_admission >= c.max_waiting_steps:
            return "wait_exceeded"
        if len(self.waiting) >= math.floor(c.waiting_served_ratio * running):
            return "backpressure"
        return None

    def _admit(self, step: Step, scheduled: list[tuple[Request, int]], budget: int) -> None:
        c = self.config
        prefill_budget = budget if c.chunked_prefill else c.max_num_batched_tokens
        while self.waiting and len(self.running) < c.max_num_seqs and prefill_budget > 0:
            req = self.waiting[0]
            first = req.scheduled_at is None
            cached = 0
            if first and c.prefix_caching and req.prefix_share > 0:
                cached = int(req.prompt_tokens * req.prefix_share) // c.block_size * c.block_size
                cached = min(cached, req.prompt_tokens - 1)
            total = req.prompt_tokens + req.output_tokens - (cached if first else 0)
            if c.chunked_prefill:
                chunk = min(total, prefill_budget)
            else:
                chunk = total
                if chunk > prefill_budget:
                    break
            if c.reserve_full:
                need = c.blocks_for(req.prompt_tokens + req.max_tokens)
            else:
                need = c.blocks_for((cached if first else 0) + chunk)
            if need > self.free_blocks:
                break
            self.waiting.popleft()
            self.free_blocks -= need
            req.blocks = need
            req.state = "running"
            if first:
                req.cached_tokens = cached
                req.computed = cached
                req.scheduled_at = step.start
                step.new.append(req)
            else:
                req.computed = 0
                step.resumed.append(req)
            self.running.append(req)
            scheduled.append((req, chunk))
            prefill_budget -= chunk

    def _preempt(self, req: Request, step: Step) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0
        req.computed = 0
        req.preemptions += 1
        req.state = "waiting"
        self.waiting.appendleft(req)
        step.preempted.append(req)

    def _time_step(self, step: Step, scheduled: list[tuple[Request, int]]) -> None:
        c = self.config
        prefill_ctx = decode_ctx = 0
        for req, chunk in scheduled:
            if req.in_prefill:
                step.prefill_tokens += chunk
                prefill_ctx += req.computed + chunk
            else:
                step.decode_seqs += 1
                decode_ctx += req.computed + chunk
        step.context_tokens = prefill_ctx + decode_ctx
        prefill = c.prefill_per_token * step.prefill_tokens + c.attention_per_token * prefill_ctx
        decode = c.decode_per_seq * step.decode_seqs + c.attention_per_token * decode_ctx
        # The fixed cost goes to the decode part when there is one (TGI runs the prefill of a
        # joining batch as its own forward pass, then the decode of everyone).
        if step.decode_seqs:
            decode += c.step_overhead
        else:
            prefill += c.step_overhead
        if step.decode_seqs and step.prefill_tokens and not c.chunked_prefill:
            prefill += c.step_overhead
        step.prefill_seconds = prefill
        step.decode_seconds = decode
        step.end = step.start + prefill + decode

    def _end_step(self) -> None:
        step = self._step
        assert step is not None
        self._step = None
        self.clock = step.end
        self.busy_seconds += step.duration
        self._update_utilization(step)
        for req, chunk in self._scheduled:
            if req.state != "running":  # aborted during the step
                continue
            req.computed += chunk
            if req.computed >= req.prompt_tokens + req.output_tokens:
                self._emit(req, step)
        self._scheduled = []
        for o in self.observers:
            o.stepped(step)

    def _update_utilization(self, step: Step) -> None:
        idle = max(0.0, step.start - self._utilization_at)
        decay = math.exp(-(idle + step.duration) / UTILIZATION_TAU)
        busy_weight = 1.0 - math.exp(-step.duration / UTILIZATION_TAU)
        self._utilization = self._utilization * decay + busy_weight
        self._utilization_at = step.end
        share = step.prefill_seconds / step.duration if step.duration > 0 else 0.0
        self._prefill_share += (share - self._prefill_share) * busy_weight

    def _emit(self, req: Request, step: Step) -> None:
        now = step.end
        req.output_tokens += 1
        gap = None if req.last_token_at is None else now - req.last_token_at
        req.last_token_at = now
        if req.first_token_at is None:
            req.first_token_at = now
            step.first_tokens.append(req)
        step.tokens.append((req, gap))
        if req.listener is not None:
            req.listener(req, "token")
        reason = None
        if req.fail_at is not None and req.output_tokens >= req.fail_at:
            reason = "error"
            step.failed.append(req)
        elif req.output_tokens >= req.stop_at:
            reason = "stop"
        elif req.output_tokens >= req.max_tokens:
            reason = "length"
        if reason is not None:
            self.running.remove(req)
            self.free_blocks += req.blocks
            req.blocks = 0
            self._finish(req, reason, now)

    def _finish(self, req: Request, reason: str, now: float) -> None:
        req.state = "finished"
        req.finish_reason = reason
        req.finished_at = now
        for o in self.observers:
            o.finished(req)
        if req.listener is not None:
            req.listener(req, "finished")


@dataclass(frozen=True)
class Phase:
    seconds: float
    rate: float  # requests per second
    name: str = ""


@dataclass(frozen=True)
class LoadProfile:
    """Arrival rate over time: phases of constant rate, repeated when `repeat`."""

    name: str
    phases: tuple[Phase, ...]
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError(f"load profile {self.name!r} has no phases")
        for p in self.phases:
            if p.seconds <= 0 or p.rate < 0 or math.isnan(p.rate):
                raise ValueError(
                    f"load profile {self.name!r}: phases need seconds > 0 and rate >= 0, got {p}"
                )
        if self.repeat and math.isinf(self.period):
            raise ValueError(f"load profile {self.name!r}: a repeating profile must be finite")

    @property
    def period(self) -> float:
        return sum(p.seconds for p in self.phases)

    def at(self, t: float) -> tuple[Phase, float]:
        """The phase in force at `t` and the time it ends."""
        offset = 0.0
        if self.repeat:
            cycles = math.floor(t / self.period)
            offset = cycles * self.period
        for phase in self.phases:
            end = offset + phase.seconds
            if t < end:
                return phase, end
            offset = end
        return Phase(INF, 0.0, "done"), INF

    def scaled(self, factor: float) -> LoadProfile:
        phases = tuple(Phase(p.seconds, p.rate * factor, p.name) for p in self.phases)
        return LoadProfile(self.name, phases, self.repeat)


def _constant(name: str, rate: float) -> LoadProfile:
    return LoadProfile(name, (Phase(3600.0, rate, name),))


# Rates suit the default EngineConfig and Workload: about 3.5 requests/s saturate one engine.
PROFILES: dict[str, LoadProfile] = {
    "idle": _constant("idle", 0.0),
    "light": _constant("light", 0.5),
    "normal": _constant("normal", 2.0),
    "overload": _constant("overload", 6.0),
    "wave": LoadProfile(
        "wave",
        (
            Phase(60.0, 2.0, "normal"),
            Phase(30.0, 6.0, "overload"),
            Phase(60.0, 2.0, "normal"),
            Phase(30.0, 0.2, "idle"),
        ),
    ),
}


def profile(name: str) -> LoadProfile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown load profile {name!r}; known: {known}") from None


@dataclass(frozen=True)
class Workload:
    """What clients send: token counts, how long they wait, how often things go wrong."""

    prompt_median: float = 600.0
    prompt_sigma: float = 0.8
    output_median: float = 160.0
    output_sigma: float = 0.9
    max_tokens: int = 512
    prefix_share: float = 0.25  # mean share of a prompt already in the prefix cache
    patience: float = 120.0  # clients time out (abort) after this many seconds
    cancel_probability: float = 0.01  # users who cancel while waiting for the answer
    error_probability: float = 0.001  # requests an engine error ends

    def lognormal(self, rng: random.Random, median: float, sigma: float, high: int) -> int:
        return max(1, min(high, round(rng.lognormvariate(math.log(median), sigma))))

    def natural_length(self, rng: random.Random, high: int) -> int:
        """Tokens the simulated model writes before its end-of-sequence token."""
        return self.lognormal(rng, self.output_median, self.output_sigma, high)

    def fate(self, rng: random.Random, arrival: float) -> tuple[float, int | None, float]:
        """(deadline, fail_at, prefix_share) for a request arriving now."""
        deadline = arrival + self.patience
        if rng.random() < self.cancel_probability:
            deadline = arrival + rng.uniform(0.5, 15.0)
        fail_at = rng.randint(1, 64) if rng.random() < self.error_probability else None
        share = min(0.95, rng.uniform(0.0, 2.0 * self.prefix_share))
        return deadline, fail_at, share

    def request(
        self, rng: random.Random, req_id: str, arrival: float, max_model_len: int
    ) -> Request:
        max_tokens = min(self.max_tokens, max_model_len // 2)
        prompt = self.lognormal(
            rng, self.prompt_median, self.prompt_sigma, max_model_len - max_tokens
        )
        stop_at = self.natural_length(rng, 4 * max_tokens)
        deadline, fail_at, share = self.fate(rng, arrival)
        return Request(req_id, prompt, max_tokens, stop_at, arrival, deadline, fail_at, share)


class Arrivals:
    """A Poisson process whose rate follows a load profile."""

    def __init__(self, load: LoadProfile, workload: Workload, rng: random.Random):
        self.load = load
        self.workload = workload
        self.rng = rng
        self.next_time = self._after(0.0)

    def _after(self, t: float) -> float:
        while True:
            phase, end = self.load.at(t)
            if phase.rate <= 0:
                if math.isinf(end):
                    return INF
                t = end
                continue
            gap = self.rng.expovariate(phase.rate)
            if t + gap < end:
                return t + gap
            t = end  # memoryless: draw again from the next phase's rate

    def pop(self) -> float:
        t = self.next_time
        self.next_time = self._after(t)
        return t

    def switch(self, load: LoadProfile, now: float) -> None:
        self.load = load
        self.next_time = self._after(now)


class Simulation:
    """Engines (one per data-parallel rank) on one clock, fed by arrivals and by `submit`."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        ranks: int = 1,
        load: LoadProfile | None = None,
        workload: Workload | None = None,
        seed: int = 0,
    ):
        if ranks < 1:
            raise ValueError("a simulation needs at least one engine rank")
        self.config = config or EngineConfig()
        self.workload = workload or Workload()
        self.observers: list[Observer] = []
        self.engines = [Engine(self.config, self.observers, rank) for rank in range(ranks)]
        self.rng = random.Random(seed)
        self.arrivals = Arrivals(load, self.workload, random.Random(seed + 1)) if load else None
        self.now = 0.0
        self._next_id = 0

    def subscribe(self, observer: Observer) -> None:
        self.observers.append(observer)

    def set_load(self, load: LoadProfile | None) -> None:
        """Switch the synthetic arrival profile; None stops synthetic arrivals."""
        if load is None:
            self.arrivals = None
        elif self.arrivals is None:
            self.arrivals = Arrivals(load, self.workload, random.Random(self.rng.random()))
            self.arrivals.switch(load, self.now)
        else:
            self.arrivals.switch(load, self.now)

    def new_id(self) -> str:
        self._next_id += 1
        return f"req-{self._next_id}"

    def make_request(self, **overrides) -> Request:
        """A request drawn from the workload, arriving now, with `overrides` applied."""
        req = self.workload.request(self.rng, self.new_id(), self.now, self.config.max_model_len)
        for k, v in overrides.items():
            setattr(req, k, v)
        return req

    def submit(self, req: Request, rank: int | None = None) -> str | None:
        """Route `req` to `rank`, or else to the least loaded rank; the refusal reason, or None
        when queued."""
        if rank is not None:
            engine = self.engines[rank]
        else:
            engine = min(self.engines, key=lambda e: (4 * e.num_waiting + e.num_running, e.rank))
        req.arrival = self.now
        reason = engine.refusal(req)
        if reason is not None:
            req.state = "refused"
            req.rank = engine.rank
            for o in self.observers:
                o.refused(req, reason)
            return reason
        engine.enqueue(req)
        return None

    def abort(self, req: Request) -> None:
        self.engines[req.rank].abort(req, self.now)

    def advance_to(self, t: float) -> None:
        """Everything that happens up to time `t` (seconds since the start)."""
        if t < self.now:
            return
        while self.arrivals is not None and self.arrivals.next_time <= t:
            at = self.arrivals.pop()
            self._engines_to(at)
            self.submit(self.make_request())
        self._engines_to(t)

    def step(self, dt: float) -> None:
        self.advance_to(self.now + dt)

    def _engines_to(self, t: float) -> None:
        for engine in self.engines:
            engine.advance_to(t)
        self.now = t

    def next_event_time(self) -> float:
        times = [e.next_event_time() for e in self.engines]
        if self.arrivals is not None:
            times.append(self.arrivals.next_time)
        return min(times)

    def drain(self, limit: float = 3600.0) -> None:
        """Stop arrivals and run until every request has finished (or `limit` seconds pass)."""
        self.arrivals = None
        end = self.now + limit
        while any(e.in_flight for e in self.engines) and self.now < end:
            nxt = min(self.next_event_time(), end)
            if math.isinf(nxt):
                break
            self.advance_to(nxt)


class Realtime:
    """Drives a simulation on the event loop's clock: simulated seconds are wall seconds."""

    MAX_SLEEP = 0.1

    def __init__(self, sim: Simulation):
        self.sim = sim
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time() - self.sim.now
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def now(self) -> float:
        assert self._loop is not None, "Realtime.start() was not called"
        return self._loop.time() - self._origin

    def catch_up(self) -> None:
        self.sim.advance_to(self.now())

    def submit(self, req: Request, rank: int | None = None) -> str | None:
        """Submit at the current wall time and wake the clock for the engine's next step."""
        self.catch_up()
        reason = self.sim.submit(req, rank)
        self._wake.set()
        return reason

    def abort(self, req: Request) -> None:
        self.catch_up()
        self.sim.abort(req)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self.catch_up()
            delay = min(max(self.sim.next_event_time() - self.now(), 0.0), self.MAX_SLEEP)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
