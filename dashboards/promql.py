"""PromQL for the dashboards, built from the normalized schema's family names.

Every helper takes a family name, checks it against `inferwatch.schema` (name and kind), and
returns text. Two rules live here and nowhere else:

- quantiles aggregate `sum by (le, engine, ...)`: bucket boundaries are the engine's own, so
  buckets of different engines are never added together;
- ratios divide by `(denominator > 0)`, so an idle deployment shows no value instead of NaN,
  and an error ratio counts "no error series yet" as zero errors, not as no data.

A family the sidecar's proxy mode also measures is read as the rules read it
(`alerts.queries.sides`): the engine's own series (`source!="proxy"`), plus the proxy's
(`source="proxy"`) for the engines that have no other (Ollama), so a request counted by an
engine and by a proxy in front of it counts once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inferwatch import schema
from inferwatch.alerts import queries

# Grafana's rate window: at least four scrape intervals, so a rate always has two samples.
RATE_WINDOW = "$__rate_interval"
# The dashboard's whole time range, for instant queries in tables.
RANGE_WINDOW = "$__range"

FINISHED = "llm_requests_finished_total"
ERROR_REASONS = "|".join(schema.ERROR_REASONS)


@dataclass(frozen=True)
class Scope:
    """The label matchers that select a dashboard's series (template variables included)."""

    matchers: tuple[str, ...]

    def sel(self, *extra: str) -> str:
        """`{a="$a", b=~"$b", extra...}`."""
        return "{" + ", ".join((*self.matchers, *extra)) + "}"


def eq(label: str, variable: str | None = None) -> str:
    """`label="$variable"`: for single-value variables."""
    return f'{label}="${variable or label}"'


def regex(label: str, variable: str | None = None) -> str:
    """`label=~"$variable"`: for multi-value variables and "All"."""
    return f'{label}=~"${variable or label}"'


def agg(op: str, group: Sequence[str], inner: str) -> str:
    """`op by (group) (inner)`, or `op(inner)` over everything."""
    if not group:
        return f"{op}({inner})"
    return f"{op} by ({', '.join(group)}) ({inner})"


def _family(name: str, *kinds: schema.Kind) -> schema.Family:
    fam = schema.family(name)
    if kinds and fam.kind not in kinds:
        wanted = " or ".join(k.value for k in kinds)
        raise ValueError(f"{name} is a {fam.kind.value}, not a {wanted}")
    return fam


# What a dashboard query of a proxy-measured family must say (its lint checks for it).
ENGINE_SIDE = queries.ENGINE_SIDE.render()


def one_source(name: str, scope: Scope, extra: Sequence[str], read: Callable[[str], str]) -> str:
    """`read(selector)` of family `name`, each request counted once: the selections of
    `alerts.queries.sides`, within the dashboard's scope."""
    reads = [read(scope.sel(*extra, *(m.render() for m in side))) for side in queries.sides(name)]
    return reads[0] if len(reads) == 1 else f"({' or '.join(reads)})"


def gauge(name: str, scope: Scope, *extra: str) -> str:
    _family(name, schema.Kind.GAUGE)
    return one_source(name, scope, extra, lambda sel: f"{name}{sel}")


def agg_gauge(op: str, name: str, group: Sequence[str], scope: Scope, *extra: str) -> str:
    """`op by (group) (name{scope})`, e.g. the max KV-cache usage per deployment."""
    return agg(op, group, gauge(name, scope, *extra))


def rate(name: str, scope: Scope, *extra: str, window: str = RATE_WINDOW) -> str:
    """`rate()` of a counter, or of a histogram's `_count` when given a histogram."""
    fam = _family(name, schema.Kind.COUNTER, schema.Kind.HISTOGRAM)
    sample = f"{name}_count" if fam.kind is schema.Kind.HISTOGRAM else name
    return one_source(name, scope, extra, lambda sel: f"rate({sample}{sel}[{window}])")


def sum_rate(
    name: str, group: Sequence[str], scope: Scope, *extra: str, window: str = RATE_WINDOW
) -> str:
    return agg("sum", group, rate(name, scope, *extra, window=window))


def _quantile_group(group: Sequence[str]) -> list[str]:
    return ["le", "engine", *(g for g in group if g not in ("le", "engine"))]


def quantile(
    q: float, name: str, group: Sequence[str], scope: Scope, window: str = RATE_WINDOW
) -> str:
    """The q-quantile of a histogram over `window`, per `group` and never across engines."""
    _family(name, schema.Kind.HISTOGRAM)
    buckets = one_source(name, scope, (), lambda sel: f"rate({name}_bucket{sel}[{window}])")
    return f"histogram_quantile({q:g}, {agg('sum', _quantile_group(group), buckets)})"


def mean(name: str, group: Sequence[str], scope: Scope, window: str = RATE_WINDOW) -> str:
    """A histogram's mean over `window`: rate of `_sum` over rate of `_count`."""
    _family(name, schema.Kind.HISTOGRAM)
    total = agg(
        "sum", group, one_source(name, scope, (), lambda s: f"rate({name}_sum{s}[{window}])")
    )
    count = agg(
        "sum", group, one_source(name, scope, (), lambda s: f"rate({name}_count{s}[{window}])")
    )
    return f"{total} / ({count} > 0)"


def bucket_increase(name: str, scope: Scope) -> str:
    """Requests per bucket and interval, for a heatmap (one engine: its own buckets)."""
    _family(name, schema.Kind.HISTOGRAM)
    increase = one_source(
        name, scope, (), lambda sel: f"increase({name}_bucket{sel}[{RATE_WINDOW}])"
    )
    return agg("sum", _quantile_group(()), increase)


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / ({denominator} > 0)"


def error_ratio(group: Sequence[str], scope: Scope, window: str = RATE_WINDOW) -> str:
    """Share of finished requests that ended in error or abort (`schema.ERROR_REASONS`).

    A deployment that never failed has no error series at all; `or 0 * total` makes that a 0
    rather than a gap.
    """
    total = sum_rate(FINISHED, group, scope, window=window)
    errors = sum_rate(FINISHED, group, scope, f'reason=~"{ERROR_REASONS}"', window=window)
    return ratio(f"({errors} or 0 * {total})", total)


def pod_engine(engine_scope: Scope) -> str:
    """One series per pod from `llm_engine_info`: its engine, and its model where it serves
    one. A pod serving several models (Triton) has GPUs that are the pod's, not one model's:
    its series carries no `model`."""
    info = gauge("llm_engine_info", engine_scope)
    by_model = f"max by (namespace, pod, engine, model) ({info})"
    several = f"count by (namespace, pod) ({by_model}) > 1"
    by_pod = f"max by (namespace, pod, engine) ({info})"
    return f"(({by_model} unless on (namespace, pod) ({several})) or on (namespace, pod) {by_pod})"


def gpu_of_engine(expr: str, engine_scope: Scope) -> str:
    """GPU series joined to the engine of their pod.

    GPU and engine series come from the same sidecar target, so they share `namespace` and
    `pod`; `pod_engine` (one series per pod) brings `engine` and `model` and keeps only the
    pods of the selected engines.
    """
    return f"{expr} * on (namespace, pod) group_left (engine, model) {pod_engine(engine_scope)}"
