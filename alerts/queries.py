"""PromQL over the normalized schema, built in one place for rules, alerts and the SLO service.

Each function returns readable PromQL text; label values go through `promql`, metric names
come from the schema.

A family the sidecar's proxy mode also measures is read through `one_source`: the engine's own
series (`source!="proxy"`), plus the proxy's (`source="proxy"`) for the engines that have no
other (Ollama), so a request counted by an engine and by a proxy in front of it counts once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.alerts.promql import Matcher
from inferwatch.exporters import registry

Matchers = Sequence[Matcher | str]
ENGINE_SIDE = Matcher(schema.SOURCE_LABEL, "!=", schema.PROXY_SOURCE)
PROXY_SIDE = Matcher(schema.SOURCE_LABEL, "=", schema.PROXY_SOURCE)
_SAMPLES: dict[str, schema.Family] = {n: f for f in schema.FAMILIES for n in f.sample_names}


def by(labels: Sequence[str]) -> str:
    return f"by ({', '.join(promql.validate_label_name(label) for label in labels)})"


def metric(family: str, suffix: str = "") -> str:
    """A schema family's sample name (`_bucket`, `_count`, `_sum` for histograms)."""
    fam = schema.family(family)
    name = fam.name + suffix
    if name not in fam.sample_names:
        raise ValueError(f"{name} is not a sample of {fam.name}")
    return name


def sides(family: str) -> tuple[tuple[Matcher, ...], ...]:
    """The selections that read a schema family with each request counted once, joined with
    `or`: all of it where only engines report it; for a family the proxy measures, the
    engine-side series, and the proxy's series of the engines that have no other (their label
    sets differ by `source`, so `or` keeps both). The dashboards render the same selections."""
    fam = schema.family(family)
    if fam not in schema.PROXY_FAMILIES:
        return ((),)
    engines = registry.proxy_only(fam.name)
    if not engines:
        return ((ENGINE_SIDE,),)
    return ((ENGINE_SIDE,), (PROXY_SIDE, promql.one_of("engine", engines)))


def one_source(
    sample: str, matchers: Sequence[Matcher | str], read: Callable[[str], str] = str
) -> str:
    """`read(selector)` of a schema sample (`llm_prompt_tokens_total`, `..._bucket`), each
    request counted once (`sides`)."""
    fam = _SAMPLES.get(sample)
    if fam is None:
        raise ValueError(f"{sample} is not a sample of the normalized schema")
    return " or ".join(read(promql.series(sample, *matchers, *side)) for side in sides(fam.name))


def rate_sum(
    family: str, labels: Sequence[str], window: str, *matchers: Matcher | str, suffix: str = ""
) -> str:
    """`sum by (labels) (rate(family{matchers}[window]))`."""
    promql.validate_duration(window)
    rates = one_source(metric(family, suffix), matchers, lambda sel: f"rate({sel}[{window}])")
    return f"sum {by(labels)} ({rates})"


def reasons_matcher(reasons: Sequence[str]) -> Matcher:
    unknown = [r for r in reasons if r not in schema.FINISH_REASONS]
    if unknown or not reasons:
        raise ValueError(f"unknown finish reasons {unknown}; known: {schema.FINISH_REASONS}")
    return promql.one_of("reason", reasons)


def error_ratio(
    labels: Sequence[str], window: str, reasons: Sequence[str], *matchers: Matcher | str
) -> str:
    """Share of finished requests whose reason counts as an error.

    Zero (not absent) while requests finish and none fail: an engine creates a reason's series
    only once it happens, and a missing error series must read as no errors.
    """
    finished = "llm_requests_finished_total"
    errors = rate_sum(finished, labels, window, *matchers, reasons_matcher(reasons))
    total = rate_sum(finished, labels, window, *matchers)
    return f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n{total}"


def histogram_quantile(
    q: float, family: str, labels: Sequence[str], window: str, *matchers: Matcher | str
) -> str:
    """The q-quantile of a histogram per `labels`, which must include `engine`."""
    if "engine" not in labels:
        raise ValueError("quantiles aggregate within one engine: keep `engine` in the labels")
    buckets = rate_sum(family, [*labels, "le"], window, *matchers, suffix="_bucket")
    return f"histogram_quantile({promql.number(q)}, {buckets})"


def fraction_at_most(
    family: str, le: str, labels: Sequence[str], window: str, *matchers: Matcher | str
) -> str:
    """Share of a histogram's observations at or under the boundary `le` (canonical text)."""
    under = rate_sum(family, labels, window, *matchers, promql.eq("le", le), suffix="_bucket")
    total = rate_sum(family, labels, window, *matchers, suffix="_count")
    return f"{under}\n/\n{total}"
