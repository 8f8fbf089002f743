"""`POST /v1/advice`: a snapshot of normalized figures in, advice out (no Prometheus).

The snapshot holds what `inferwatch advise --upstream` measures: over one window, how many
requests finished by reason, how much the token and preemption counters grew, each latency
histogram's bucket increases, and samples of the gauges; plus the engine's info labels and,
optionally, the flags it runs with and latency targets. Objectives default to the service's
SLO specs for the snapshot's namespace/deployment, else the alert defaults. HPA advice needs
history over time and is not given from a snapshot.

    {"engine": "vllm", "model": "meta-llama/Llama-3.1-8B-Instruct", "window_seconds": 300,
     "finished": {"stop": 1200, "error": 1},
     "counters": {"prompt_tokens": 600000, "generation_tokens": 240000, "preemptions": 150},
     "histograms": {"ttft": [{"le": 0.5, "count": 900}, {"le": "+Inf", "count": 1201}]},
     "gauges": {"kv_cache_usage": [0.97, 0.98, 0.96], "requests_running": [60, 61, 60]},
     "info": {"gpu_memory_utilization": "0.8"}, "flags": {"--max-num-seqs": "64"}}
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.slo import queries
from inferwatch.slo.deps import DEPLOYMENT_PATTERN, NAMESPACE_PATTERN
from inferwatch.slo.figures import Figures, Headline, Stat, Target, merge_buckets
from inferwatch.slo.flags import Current, engine_flags, read_flags
from inferwatch.slo.models import Advice
from inferwatch.slo.objectives import LatencyObjective, headline, objectives_for

if TYPE_CHECKING:
    from inferwatch.slo.service import SLOService

MAX_WINDOW_SECONDS = 31 * 86400
MAX_SAMPLES = 10_000
# Counts, tokens and bytes: far above any real window, far below float overflow in sums.
Finite = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]


class Bucket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    le: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] | Literal["+Inf"]
    count: Finite


class LatencyTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    histogram: Literal["ttft", "tpot", "itl", "e2e", "queue"]
    quantile: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
    threshold: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Literal["vllm", "tgi", "sglang", "trtllm", "triton", "llamacpp", "ollama"]
    model: Annotated[str, Field(max_length=500)] | None = None
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN, max_length=63)] | None = None
    deployment: Annotated[str, Field(pattern=DEPLOYMENT_PATTERN, max_length=253)] | None = None
    window_seconds: Annotated[float, Field(gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False)]
    finished: dict[Literal["stop", "length", "abort", "error"], Finite] = Field(
        default_factory=dict
    )
    counters: dict[Literal["prompt_tokens", "generation_tokens", "preemptions"], Finite] = Field(
        default_factory=dict
    )
    histograms: dict[
        Literal["ttft", "tpot", "itl", "e2e", "queue"],
        Annotated[list[Bucket], Field(max_length=200)],
    ] = Field(default_factory=dict)
    gauges: dict[
        Literal[
            "kv_cache_usage",
            "requests_running",
            "requests_waiting",
            "gpu_memory_free_bytes",
            "gpu_memory_free_ratio",
            "gpu_utilization",
        ],
        Annotated[list[Finite], Field(max_length=MAX_SAMPLES)],
    ] = Field(default_factory=dict)
    info: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)
    flags: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)
    gpu_model: Annotated[str, Field(max_length=200)] | None = None
    gpu_total_bytes: Annotated[float, Field(gt=0, le=1e15, allow_inf_nan=False)] | None = None
    objectives: Annotated[list[LatencyTarget], Field(max_length=20)] = Field(default_factory=list)

    @field_validator("model", "gpu_model")
    @classmethod
    def _no_control(cls, value: str | None) -> str | None:
        if value is not None:
            promql.validate_model(value)
        return value

    @field_validator("info")
    @classmethod
    def _info_labels(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(schema.ENGINE_INFO_LABELS))
        if unknown:
            known = ", ".join(schema.ENGINE_INFO_LABELS)
            raise ValueError(f"unknown llm_engine_info labels {unknown}; known: {known}")
        return value

    @model_validator(mode="after")
    def _known_flags(self) -> Snapshot:
        known = {f.name for f in engine_flags(self.engine)}
        unknown = sorted(set(self.flags) - known)
        if unknown:
            raise ValueError(
                f"flags {unknown} are not among {self.engine}'s tuned flags: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        return self


def to_figures(s: Snapshot, head: Headline | None) -> Figures:
    window = f"{math.ceil(s.window_seconds)}s"
    fig = Figures(
        target=Target(s.namespace, s.deployment, s.engine, s.model),
        source="snapshot",
        window=window,
        step=window,
        origin="the snapshot posted to /v1/advice",
        finished={k: float(v) for k, v in s.finished.items()},
        counters={k: float(v) for k, v in s.counters.items()},
        info={"engine": s.engine, **({"model": s.model} if s.model else {}), **s.info},
        gpu_model=s.gpu_model,
        gpu_total_bytes=s.gpu_total_bytes,
        headline=head,
    )
    for name, data in s.histograms.items():
        pairs = [(math.inf if b.le == "+Inf" else float(b.le), float(b.count)) for b in data]
        fig.buckets[name] = merge_buckets(pairs)
    for name, samples in s.gauges.items():
        stat = Stat.of(samples)
        if stat is not None:
            fig.gauges[name] = stat
    fig.points = max((st.count for st in fig.gauges.values()), default=0)
    return fig


def advise_snapshot(s: Snapshot, service: SLOService) -> Advice:
    from inferwatch.slo.advisor import advise
    from inferwatch.slo.rule_inputs import Inputs

    if s.objectives:
        latency = tuple(
            LatencyObjective("request", o.histogram, o.quantile, o.threshold) for o in s.objectives
        )
        _, availability = objectives_for(s.namespace, s.deployment, service.specs)
    else:
        latency, availability = objectives_for(
            s.namespace, s.deployment, service.specs, service.config.alerts
        )
    fig = to_figures(s, headline(latency, list(queries.HISTOGRAMS)))
    flags: dict[str, Current] = read_flags(s.engine, fig.info, None)
    for name, text in s.flags.items():
        stated = read_flags(s.engine, {}, {"args": [f"{name}={text}"]})[name]
        if stated.known:
            flags[name] = Current(stated.flag, stated.value, "request")
    return advise(
        Inputs(
            figures=fig,
            latency=latency,
            availability=availability,
            flags=flags,
            prometheus_url=service.config.keda_prometheus_url or service.prometheus.url,
        )
    )
