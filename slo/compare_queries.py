"""PromQL of the canary comparison, in one place for the batched reads and the evidence.

Each builder takes the labels to group by and the matchers. The comparison reads both variants
in one query each (`GROUP` labels, `namespace=~"a|b"`, `deployment=~"x|y"`); the evidence shows
the same expression for one variant without grouping, which returns that variant's figure.
Families come from `slo.queries` and `alerts.queries` (`one_source`: a request counted by an
engine and by a proxy in front of it counts once); nothing here spells a selector by hand.

    >>> kv_cache(GROUP, [promql.one_of("deployment", ["chat-v1", "chat-v2"])])
    'max by (namespace, deployment) (llm_kv_cache_usage_ratio{deployment=~"chat-v1|chat-v2"})'
    >>> kv_cache((), [promql.eq("deployment", "chat-v2")])
    'max(llm_kv_cache_usage_ratio{deployment="chat-v2"})'
"""

from __future__ import annotations

from collections.abc import Sequence

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.alerts import queries as q
from inferwatch.alerts.promql import Matcher
from inferwatch.slo import queries

Labels = Sequence[str]
Matchers = Sequence[Matcher]

GROUP = queries.GROUP
INF = "+Inf"
GENERATION = schema.family("llm_generation_tokens_total").name
# One series per GPU (or MIG instance) a pod's sidecar reports; only with dcgm-exporter.
GPU_SERIES = schema.family("llm_gpu_utilization_ratio").name


def _agg(op: str, labels: Labels, body: str) -> str:
    return f"{op} {q.by(labels)} ({body})" if labels else f"{op}({body})"


def samples_per_pod(window: str, labels: Labels, matchers: Matchers) -> str:
    """How many times the most scraped pod's sidecar was scraped in the window: the window
    over it is the scrape interval, which sets the resolution of per-step figures."""
    promql.validate_duration(window)
    up = promql.series(queries.UP, *matchers, promql.eq("source", queries.ENGINE_SOURCE))
    return _agg("max", labels, f"count_over_time({up}[{window}])")


def engine_info(window: str, matchers: Matchers) -> str:
    return queries.engine_info(window, matchers)


def finished(window: str, labels: Labels, matchers: Matchers) -> str:
    """Requests finished in the window, by reason."""
    return queries.finished(window, labels, matchers)


def requests_total(window: str, matchers: Matchers, reasons: Sequence[str] = ()) -> str:
    """One variant's requests finished in the window (of these reasons, when given)."""
    more = [q.reasons_matcher(reasons)] if reasons else []
    return f"sum({queries.finished(window, (), [*matchers, *more])})"


def buckets(histogram: str, window: str, labels: Labels, matchers: Matchers) -> str:
    """Bucket increases over the window, by `labels`, engine and le."""
    return queries.buckets(histogram, window, labels, matchers)


def _bucket_increase(histogram: str, window: str, matchers: Matchers, le: Matcher) -> str:
    sample = queries.HISTOGRAMS[histogram] + "_bucket"
    body = q.one_source(sample, [*matchers, le], lambda s: f"increase({s}[{window}])")
    return f"sum({body})"


def observations(histogram: str, window: str, matchers: Matchers) -> str:
    """One variant's observations of a histogram in the window (its +Inf bucket)."""
    return _bucket_increase(histogram, window, matchers, promql.eq("le", INF))


def tail_count(histogram: str, window: str, matchers: Matchers, le_texts: Sequence[str]) -> str:
    """One variant's observations above a bucket boundary (its `le` label texts)."""
    above = promql.one_of("le", le_texts)
    total = observations(histogram, window, matchers)
    return f"{total} - {_bucket_increase(histogram, window, matchers, above)}"


def quantile(
    histogram: str, q_: float, window: str, matchers: Matchers, le_texts: Sequence[str] = ()
) -> str:
    """One variant's q-quantile over the window, per engine, on these boundaries only when
    given (two layouts compared on their common boundaries)."""
    only = [promql.one_of("le", le_texts)] if le_texts else []
    return queries.quantile(histogram, q_, window, (), [*matchers, *only])


def counter(name: str, window: str, labels: Labels, matchers: Matchers) -> str:
    """A counter's increase over the window (`generation_tokens`, `preemptions`)."""
    return queries.counter(name, window, labels, matchers)


# ---- per step -------------------------------------------------------------------------------


def kv_cache(labels: Labels, matchers: Matchers) -> str:
    """The fullest pod's KV-cache usage, per step."""
    return queries.gauge("kv_cache_usage", labels, matchers)


def generation_rate(rate_window: str, labels: Labels, matchers: Matchers) -> str:
    """Generated tokens per second, per step."""
    promql.validate_duration(rate_window)
    body = q.one_source(GENERATION, matchers, lambda s: f"rate({s}[{rate_window}])")
    return _agg("sum", labels, body)


def gpus(labels: Labels, matchers: Matchers) -> str:
    """GPUs (or MIG instances) the pods' sidecars report, per step."""
    return _agg("count", labels, promql.series(GPU_SERIES, *matchers))


def pods(labels: Labels, matchers: Matchers) -> str:
    """Pods whose engine answers its sidecar, per step."""
    return queries.pods_serving(labels, matchers)


def per_unit_rate(rate_window: str, matchers: Matchers, per: str) -> str:
    """One variant's generated tokens per second per GPU (or per pod), per step."""
    divisor = gpus((), matchers) if per == "GPU" else pods((), matchers)
    return f"{generation_rate(rate_window, (), matchers)} / {divisor}"


def over_steps(stat: str, expr: str, window: str, step: str) -> str:
    """A statistic of a per-step expression over the window, at the comparison's steps:
    `sum` (of per-step increases), or `mean`, `p95`, ... as the advisor reads gauges."""
    if stat != "sum":
        return queries.stat_over_time(stat, expr, window, step)
    promql.validate_duration(window)
    promql.validate_duration(step)
    return f"sum_over_time(({expr})[{window}:{step}])"
