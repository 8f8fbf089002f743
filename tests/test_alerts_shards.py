"""The `le` shards of the histogram bucket-rate rules (alerts/shards.py).

Each histogram's bucket rates are recorded by several groups, each reading a slice of its `le`
values, so no group reads a whole histogram at fleet scale. What must hold: the shards select
every possible `le` exactly once (defaults of every engine, `+Inf`, custom boundaries), read by
Python's regex engine from the rendered rules and by a real Prometheus; a real Prometheus records
one series per (model, le) with the labels the unsharded rule gave, and quantiles equal to the
unsharded expression's; the shards balance the default layouts; the count is validated.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

import pytest
import yaml

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql, recording, shards
from inferwatch.alerts import queries as q
from inferwatch.alerts.config import AlertConfig
from inferwatch.alerts.promql import Matcher
from inferwatch.exporters import buckets, measure, registry
from tests.conftest import ROOT
from tests.harness.pages import Mode, PageServer
from tests.harness.prometheus import Prometheus, scrape_job

RECORDING_RULES = ROOT / "alerts" / "generated" / "rules" / "inferwatch-recording.rules.yaml"
FAMILIES = c.LATENCY_HISTOGRAMS
DEFAULT = AlertConfig().bucket_shards
CUSTOM = ("0.123", "3e-05", "12345.0")  # boundaries no engine has by default


def candidates(family: str) -> list[str]:
    """Every `le` a shard must take: each engine's defaults, +Inf, and custom boundaries."""
    defaults = {
        buckets.le_text(b)
        for layouts in buckets.DEFAULT_BUCKETS.values()
        for b in layouts.get(family, ())
    }
    return [*sorted(defaults), shards.INF, *CUSTOM]


def selects(matcher: Matcher, value: str) -> bool:
    """Whether a label matcher selects `value`, as PromQL does (regexes fully anchored)."""
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None
    return found if matcher.op == "=~" else not found


def le_matchers(expr: str) -> list[Matcher | None]:
    """The `le` matcher of every selector in a rendered expression (None: no `le` matcher)."""
    found = []
    for body in re.findall(r"_bucket(\{[^}]*\})?", expr):
        les = [m for m in promql.parse_matchers(body) if m.name == "le"]
        assert len(les) <= 1, expr
        found.append(les[0] if les else None)
    return found


def shard_rules(groups: list[dict], family: str) -> list[dict]:
    """The bucket-rate rules of a family's shard groups, in shard order."""
    names = [c.bucket_shard_group(family, k) for k in range(1, len(groups) + 1)]
    by_name = {g["name"]: g for g in groups}
    out = []
    for name in names:
        if name not in by_name:
            break
        (rule,) = by_name[name]["rules"]
        out.append(rule)
    return out


def committed_groups() -> list[dict]:
    return yaml.safe_load(RECORDING_RULES.read_text())["groups"]


def built_groups(count: int) -> list[dict]:
    built = recording.groups(AlertConfig(bucket_shards=count))
    return [{"name": g.name, "rules": [{"expr": r.expr} for r in g.rules]} for g in built]


# ---- the partition, read by Python's regex engine from the rendered rules ------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("count", [1, 2, 3, DEFAULT, 12, shards.max_count()])
def test_every_le_value_falls_in_exactly_one_shard(family: str, count: int) -> None:
    groups = committed_groups() if count == DEFAULT else built_groups(count)
    rules = shard_rules(groups, family)
    assert len(rules) == count
    matchers = []
    for rule in rules:
        found = le_matchers(rule["expr"])
        # The same `le` matcher on both selectors of the `or` (engine side, proxy side).
        assert len(found) == (2 if registry.proxy_only(family) else 1)
        assert len(set(found)) == 1, rule["expr"]
        matchers.append(found[0])
    assert (matchers == [None]) == (count == 1)
    for value in candidates(family):
        hits = [k for k, m in enumerate(matchers, 1) if m is None or selects(m, value)]
        assert len(hits) == 1, f"{family} le={value!r} is in shards {hits}"


def test_custom_boundaries_and_inf_fall_in_the_last_shard() -> None:
    for family in FAMILIES:
        *_, last = shards.shards(family, DEFAULT)
        assert last.matcher is not None and last.matcher.op == "!~"
        for value in (shards.INF, *CUSTOM):
            assert selects(last.matcher, value)


def test_regex_metacharacters_in_boundaries_are_escaped() -> None:
    """`0.001` must not select `0x001` (an unescaped `.` would) nor `0.0011` (unanchored)."""
    ttft = "llm_time_to_first_token_seconds"
    first = shards.shards(ttft, DEFAULT)[0]
    assert first.matcher is not None and "0\\.001" in first.matcher.value
    (matcher,) = {m for m in le_matchers(shard_rules(committed_groups(), ttft)[0]["expr"])}
    assert matcher == first.matcher
    assert selects(matcher, "0.001") and not selects(matcher, "0x001")
    assert not selects(matcher, "00001") and not selects(matcher, "0.0011")  # anchored
    inf = shards.shards(ttft, DEFAULT)[-1].matcher
    assert inf is not None and selects(inf, "+Inf") and not selects(inf, "1.0")


# ---- weights and balance --------------------------------------------------------------------


def test_weights_count_the_engines_reporting_each_boundary() -> None:
    ttft = shards.weights("llm_time_to_first_token_seconds")
    # 0.1: vLLM, SGLang, TensorRT-LLM and Triton's first-response histogram; 0.001: vLLM only.
    assert ttft["0.1"] == 4 and ttft["0.001"] == 1 and ttft["+Inf"] == 4
    assert list(ttft) == [*sorted(list(ttft)[:-1], key=float), "+Inf"]
    queue = shards.weights("llm_request_queue_duration_seconds")
    assert queue["+Inf"] == 2  # vLLM and TGI
    assert sum(queue.values()) == 21 + 35 + 2


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("count", range(2, 9))
def test_shards_are_contiguous_and_balanced(family: str, count: int) -> None:
    table = shards.weights(family)
    parts = shards.shards(family, count)
    assert [v for s in parts for v in s.values] == list(table)  # in order, each value once
    assert all(s.values for s in parts)
    assert [s.weight for s in parts] == [sum(table[v] for v in s.values) for s in parts]
    mean = sum(table.values()) / count
    assert max(s.weight for s in parts) <= 2 * mean, [s.weight for s in parts]


def test_cuts_keep_every_part_non_empty() -> None:
    assert shards.cuts([1, 1, 1, 1], 4) == [1, 2, 3]
    assert shards.cuts([10, 1, 1, 1], 2) == [1]
    assert shards.cuts([1, 1, 1, 10], 3) == [2, 3]  # the heavy last item alone
    with pytest.raises(ValueError, match="cannot cut 3 boundaries into 4 non-empty shards"):
        shards.cuts([1, 1, 1], 4)


@pytest.mark.parametrize("count", [0, -1, 36])
def test_shards_refuse_a_count_the_family_cannot_take(count: int) -> None:
    with pytest.raises(
        ValueError, match=rf"llm_time_to_first_token_seconds has 34 default boundaries: it takes "
        rf"1 to 35 shards, not {count}"
    ):  # fmt: skip
        shards.shards("llm_time_to_first_token_seconds", count)


# ---- the groups -----------------------------------------------------------------------------


def test_each_histogram_has_its_shard_groups_before_its_quantile_group() -> None:
    names = [g.name for g in recording.groups(AlertConfig())]
    for family in FAMILIES:
        expected = [c.bucket_shard_group(family, k) for k in range(1, DEFAULT + 1)]
        start = names.index(expected[0])
        assert names[start : start + DEFAULT + 1] == [*expected, c.histogram_group(family)]
    groups = {g.name: g for g in recording.groups(AlertConfig())}
    for family in FAMILIES:
        for k in range(1, DEFAULT + 1):
            (rule,) = groups[c.bucket_shard_group(family, k)].recordings()
            assert rule.record == c.bucket_rate(family)
            assert dict(rule.labels) == {c.bucket_shard_label(k): ""}
        quantiles = groups[c.histogram_group(family)].recordings()
        assert [r.record for r in quantiles] == [
            c.count_rate(family),
            *(c.quantile(family, x) for x in c.QUANTILES),
        ]
    assert [r.record for r in groups[c.GROUP_MODEL_RULES].recordings()] == [
        c.MODEL_REQUESTS_FINISHED_RATE,
        c.MODEL_REQUEST_ERROR_RATIO,
    ]
    assert [r.record for r in groups[c.GROUP_MODEL_LOAD_RULES].recordings()] == [
        c.MODEL_PROMPT_TOKENS_RATE,
        c.MODEL_GENERATION_TOKENS_RATE,
        c.MODEL_PREEMPTIONS_RATE,
        c.MODEL_PREFIX_CACHE_HIT_RATIO,
        c.MODEL_REQUESTS_RUNNING,
        c.MODEL_REQUESTS_WAITING,
        c.MODEL_KV_CACHE_USAGE,
    ]


def test_one_shard_is_the_unsharded_rule() -> None:
    family = "llm_request_duration_seconds"
    (group,) = recording.bucket_groups(family, AlertConfig(bucket_shards=1))
    (rule,) = group.recordings()
    assert group.name == c.bucket_shard_group(family, 1)
    assert rule.expr == q.rate_sum(family, [*c.MODEL_LABELS, "le"], "5m", suffix="_bucket")
    assert not rule.labels and "le=" not in rule.expr and "le!" not in rule.expr


def test_the_selector_override_reaches_every_shard() -> None:
    config = AlertConfig(selector='namespace=~"llm-.*"', bucket_shards=3)
    for group in recording.bucket_groups("llm_time_to_first_token_seconds", config):
        (rule,) = group.recordings()
        bodies = re.findall(r"_bucket\{([^}]*)\}", rule.expr)
        assert len(bodies) == 2 and all('namespace=~"llm-.*"' in b and "le" in b for b in bodies)


def test_shard_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        c.bucket_shard_group("llm_time_to_first_token_seconds", 0)
    with pytest.raises(ValueError, match="numbered from 1"):
        c.bucket_shard_label(0)


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (0, "bucket_shards must be from 1 (one rule per histogram) to 35"),
        (-2, "not -2"),
        (36, "to 35 (one shard per default boundary, and one for +Inf, of the histogram with"),
        ("six", "valid integer"),
        (2.5, "valid integer"),
        (True, "valid integer"),
    ],
)
def test_the_shard_count_is_validated(count: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AlertConfig(bucket_shards=count)


# ---- on a real Prometheus -------------------------------------------------------------------

FAMILY = "llm_request_duration_seconds"  # vLLM's, TGI's and the proxy's layouts all differ
PODS = [
    # (namespace, deployment, pod, engine, model, boundaries, extra labels)
    ("llm", "chat", "chat-0", "vllm", "llama", buckets.boundaries("vllm", FAMILY), ',rank="0"'),
    ("llm", "chat", "chat-1", "vllm", "llama", buckets.boundaries("vllm", FAMILY), ',rank="0"'),
    ("batch", "tgi", "tgi-0", "tgi", "mistral", buckets.boundaries("tgi", FAMILY), ""),
    # vLLM started with --custom-histogram-buckets: boundaries no default has, and some it has.
    ("llm", "custom", "custom-0", "vllm", "qwen", (3e-05, 0.123, 1.0, 5.0, 12345.0), ',rank="0"'),
    # Ollama measured by the sidecar's proxy: the `or`'s second selector.
    ("llm", "local", "local-0", "ollama", "gemma", measure.BUCKETS["request_duration_seconds"],
     ',source="proxy"'),
]  # fmt: skip


# (model, le) of every bucket series the rules must record
EXPECTED = {
    (model, buckets.le_text(le)) for *_, model, bounds, _extra in PODS for le in (*bounds, math.inf)
}


def page(tick: int) -> str:
    """Every pod's cumulative bucket counts after `tick` scrapes: each pod's observations
    spread over its own buckets, so each model has its own quantiles."""
    lines = []
    for p, (namespace, deployment, pod, engine, model, bounds, extra) in enumerate(PODS):
        labels = (
            f'namespace="{namespace}",deployment="{deployment}",pod="{pod}",'
            f'container="inferwatch",engine="{engine}",model="{model}"{extra}'
        )
        per_tick = 40 + 10 * p
        median = bounds[len(bounds) // 2 - p % 3]
        for le in (*bounds, math.inf):
            share = 1.0 if le == math.inf else le / (le + median)
            lines.append(
                f'{FAMILY}_bucket{{{labels},le="{buckets.le_text(le)}"}} {tick * per_tick * share}'
            )
        lines.append(f"{FAMILY}_count{{{labels}}} {tick * per_tick}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus evaluating the committed recording rules every second over a page scraped
    every second for a few scrapes, then gone. From about a second after the last scrape until
    five minutes after the first, every 5m rate reads the same samples and extrapolates the
    same way, so each group, at whatever offset it evaluates, records the same values: what the
    recorded series hold can then be compared to the unsharded expressions exactly."""
    with PageServer(page(0)) as server:
        job = scrape_job("fleet", f"127.0.0.1:{server.port}", interval="1s", honor_labels=True)
        prom = Prometheus(
            tmp_path_factory.mktemp("prometheus"),
            scrape_configs=[job],
            rule_files=[RECORDING_RULES],
        ).start()
        try:
            prom.wait_targets_up()
            for tick in range(1, 6):
                server.text = page(tick)
                time.sleep(1.2)
            server.mode = Mode.DOWN
            gone = time.time()
            quantile = c.quantile(FAMILY, 0.95)
            # Every shard's latest sample after the last scrape, then a quantile computed later.
            prom.wait_for(
                f"min(timestamp({c.bucket_rate(FAMILY)}))", lambda r: r and r[0].value > gone + 2.5
            )
            prom.wait_for(f"min(timestamp({quantile}))", lambda r: r and r[0].value > gone + 4.5)
            yield prom
        finally:
            prom.stop()


def _key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["model"], labels["le"]


@pytest.mark.prometheus
def test_prometheus_records_one_bucket_series_per_model_and_le(settled: Prometheus) -> None:
    recorded = settled.vector(c.bucket_rate(FAMILY))
    assert sorted(_key(s.labels) for s in recorded) == sorted(EXPECTED)
    for sample in recorded:  # the labels the unsharded rule gave: no shard label
        assert set(sample.labels) == {"__name__", *c.MODEL_LABELS, "le"}
    unsharded = {
        _key(s.labels): s.value
        for s in settled.vector(q.rate_sum(FAMILY, [*c.MODEL_LABELS, "le"], "5m", suffix="_bucket"))
    }
    assert len(unsharded) == len(EXPECTED)
    for sample in recorded:
        assert sample.value == pytest.approx(unsharded[_key(sample.labels)], rel=1e-9)
        assert sample.value > 0


@pytest.mark.prometheus
def test_prometheus_selects_each_series_in_exactly_one_shard(settled: Prometheus) -> None:
    """The shards' own expressions, each on its own: disjoint, and together every bucket."""
    seen: dict[tuple[str, str], list[int]] = {}
    for k, rule in enumerate(shard_rules(committed_groups(), FAMILY), 1):
        for sample in settled.vector(rule["expr"]):
            seen.setdefault(_key(sample.labels), []).append(k)
    assert set(seen) == EXPECTED
    assert {key: ks for key, ks in seen.items() if len(ks) != 1} == {}
    assert len({ks[0] for ks in seen.values()}) == DEFAULT  # every shard has buckets here
    assert seen[("qwen", "3e-05")] == seen[("qwen", "12345.0")] == [DEFAULT]


@pytest.mark.prometheus
@pytest.mark.parametrize("quantile", c.QUANTILES)
def test_prometheus_quantiles_equal_the_unsharded_expressions(
    settled: Prometheus, quantile: float
) -> None:
    recorded = {s.labels["model"]: s.value for s in settled.vector(c.quantile(FAMILY, quantile))}
    direct = {
        s.labels["model"]: s.value
        for s in settled.vector(q.histogram_quantile(quantile, FAMILY, c.MODEL_LABELS, "5m"))
    }
    assert set(recorded) == set(direct) == {"llama", "mistral", "qwen", "gemma"}
    for model, value in direct.items():
        assert recorded[model] == pytest.approx(value, rel=1e-9), model
    counts = {s.labels["model"]: s.value for s in settled.vector(c.count_rate(FAMILY))}
    raw = {
        s.labels["model"]: s.value
        for s in settled.vector(q.rate_sum(FAMILY, c.MODEL_LABELS, "5m", suffix="_count"))
    }
    assert counts == pytest.approx(raw, rel=1e-9)


def test_the_docs_give_the_code_default_and_range() -> None:
    text = (ROOT / "docs" / "alerting.md").read_text()
    most, default = shards.max_count(), AlertConfig().bucket_shards
    assert f"(1 to {most}; default {default})" in text
    assert f"k = 1..{default}" in text and f"(default {default})" in text
