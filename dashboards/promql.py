"""PromQL for the dashboards, built from the normalized schema's family names.

Every helper takes a family name, checks it against `inferwatch.schema` (name and kind), and
returns text. Two rules live here and nowhere else:

- quantiles aggregate `sum by (le, engine, ...)`: bucket boundaries are the engine's own, so
  buckets of different engines are never added together;
- ratios divide by `(denominator > 0)`, so an idle deployment shows no value instead of NaN,
  and an error ratio counts "no error series yet" as zero errors, not as no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferwatch import schema

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


def gauge(name: str, scope: Scope, *extra: str) -> str:
    _family(name, schema.Kind.GAUGE)
    return f"{name}{scope.sel(*extra)}"


def agg_gauge(op: str, name: str, group: Sequence[str], scope: Scope, *extra: str) -> str:
    """`op by (group) (name{scope})`, e.g. the max KV-cache usage per deployment."""
    return agg(op, group, gauge(name, scope, *extra))


def rate(name: str, scope: Scope, *extra: str, window: str = RATE_WINDOW) -> str:
    """`rate()` of a counter, or of a histogram's `_count` when given a histogram."""
    fam = _family(name, schema.Kind.COUNTER, schema.Kind.HISTOGRAM)
    sample = f"{name}_count" if fam.kind is schema.Kind.HISTOGRAM else name
    return f"rate({sample}{scope.sel(*extra)}[{window}])"


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
    buckets = f"rate({name}_bucket{scope.sel()}[{window}])"
    return f"histogram_quantile({q:g}, {agg('sum', _quantile_group(group), buckets)})"


def mean(name: str, group: Sequence[str], scope: Scope, window: str = RATE_WINDOW) -> str:
    """A histogram's mean over `window`: rate of `_sum` over rate of `_count`."""
    _family(name, schema.Kind.HISTOGRAM)
    total = agg("sum", group, f"rate({name}_sum{scope.sel()}[{window}])")
    count = agg("sum", group, f"rate({name}_count{scope.sel()}[{window}])")
    return f"{total} / ({count} > 0)"


def bucket_increase(name: str, scope: Scope) -> str:
    """Requests per bucket and interval, for a heatmap (one engine: its own buckets)."""
    _family(name, schema.Kind.HISTOGRAM)
    increase = f"increase({name}_bucket{scope.sel()}[{RATE_WINDOW}])"
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


def gpu_of_engine(expr: str, engine_scope: Scope) -> str:
    """GPU series joined to the engine of their pod.

    GPU and engine series come from the same sidecar target, so they share `namespace` and
    `pod`; `llm_engine_info` (one series per pod after `max by`) brings `engine` and `model`
    and keeps only the pods of the selected engines.
    """
    info = f"max by (namespace, pod, engine, model) ({gauge('llm_engine_info', engine_scope)})"
    return f"{expr} * on (namespace, pod) group_left (engine, model) {info}"
