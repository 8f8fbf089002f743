"""The recording rules the SLO service reads: every one of the advisor's rules has a promtool
case with a hand-computed answer, they record over the service's default window at its step,
and recorded series are only asked for where the rules record them."""

from __future__ import annotations

import re

import pytest
import yaml

from inferwatch.alerts import conventions as c
from inferwatch.alerts import promql
from inferwatch.slo import from_prometheus, queries
from inferwatch.slo.service import DEFAULT_WINDOW
from tests.conftest import ROOT

RECORDING = ROOT / "alerts" / "generated" / "rules" / "inferwatch-recording.rules.yaml"
PROMTOOL = ROOT / "tests" / "promtool"
ADVISOR_GROUPS = (
    c.GROUP_DEPLOYMENT_RULES,
    c.GROUP_DEPLOYMENT_GPU_RULES,
    c.GROUP_ADVISOR_WINDOW_RULES,
)


def _advisor_records() -> set[str]:
    groups = yaml.safe_load(RECORDING.read_text())["groups"]
    return {r["record"] for g in groups if g["name"] in ADVISOR_GROUPS for r in g["rules"]}


def _checked_in_promtool() -> set[str]:
    """Recorded names whose value some promql_expr_test states."""
    names = set()
    for path in PROMTOOL.glob("*.test.yaml"):
        for group in yaml.safe_load(path.read_text())["tests"]:
            for check in group.get("promql_expr_test", []):
                for sample in check.get("exp_samples") or []:
                    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", sample["labels"])
                    if m:
                        names.add(m.group(1))
    return names


def test_every_advisor_rule_has_a_promtool_case() -> None:
    records = _advisor_records()
    # Seven per-deployment series, five statistics of each, nine window increases.
    assert len(records) == 7 + 7 * 5 + len(queries.INCREASES)
    assert sorted(records - _checked_in_promtool()) == []


def test_the_rules_record_the_services_default_window_at_its_step() -> None:
    assert DEFAULT_WINDOW == c.ADVISOR_WINDOW
    assert from_prometheus.step_for(c.ADVISOR_WINDOW) == c.ADVISOR_STEP
    # Whole 5m rates tile the window the increases are summed over.
    assert promql.seconds(c.ADVISOR_WINDOW) % promql.seconds(c.RATE_WINDOW) == 0


def test_recorded_series_are_asked_for_only_where_the_rules_record_them() -> None:
    with pytest.raises(ValueError, match="per namespace, deployment"):
        queries.gauge("kv_cache_usage", ["namespace"], [], recorded=True)
    with pytest.raises(ValueError, match="recorded over 6h, not 3h"):
        queries.counter("preemptions", "3h", queries.GROUP, [], recorded=True)
    assert queries.counter("preemptions", "6h", queries.GROUP, [], recorded=True) == (
        "deployment:llm_preemptions:increase6h"
    )
