"""The generated SLO rules over a month of history in a real Prometheus, with known answers.

This is the path docs/alerting.md gives a user who installs the rules on a Prometheus that
already holds a month of data. 31 days of counters for two example SLOs, every 150 seconds,
are backfilled with `promtool tsdb create-blocks-from openmetrics`; a first Prometheus serves
them to `promtool tsdb create-blocks-from rules`, which evaluates the generated backfill file
(the SLOs' 5m rate rules) over the month; a second Prometheus starts on the raw history and
those blocks with the committed SLO rule file and evaluates it now. Each SLO's last period
holds one steady error ratio and the days before it another, so the period windows (30 days,
or 28 for completions-latency) must read exactly the first: the budget left is known to the
digit.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inferwatch.alerts import build, slo_rules
from inferwatch.alerts import conventions as c
from inferwatch.slo import spec as slo_spec
from tests.conftest import ROOT
from tests.harness import promtool
from tests.harness.prometheus import Prometheus
from tests.harness.promtool import Family, openmetrics

pytestmark = pytest.mark.prometheus

SLO_RULES = ROOT / "alerts" / "generated" / "rules" / "inferwatch-slos.rules.yaml"
BACKFILL_RULES = ROOT / "alerts" / "generated" / "backfill" / "inferwatch-slo-rates.rules.yaml"
STEP = 150  # seconds between raw samples: any 5m rate window holds at least two
EVAL = 300  # seconds between backfilled rate evaluations: their 5m windows tile the month
DAYS = 31


def counters(
    end: float, period_days: int, per_step: int, bad_now: int, bad_before: int, start: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(all, bad) counter points ending at `end`: `bad_now` of every `per_step` requests are
    bad within the last `period_days`, `bad_before` before that."""
    boundary = end - period_days * 86400
    total, bad = start, start / 10
    all_points, bad_points = [], []
    steps = DAYS * 86400 // STEP
    for i in range(steps + 1):
        t = end - (steps - i) * STEP
        if i:
            total += per_step
            bad += bad_now if t > boundary else bad_before
        all_points.append((t, total))
        bad_points.append((t, bad))
    return all_points, bad_points


def history(end: float) -> str:
    where = {"namespace": "llm", "deployment": "chat-vllm", "pod": "chat-vllm-0",
             "container": "inferwatch", "engine": "vllm", "model": "llama-3-8b",
             "rank": "0"}  # fmt: skip
    tgi = {"namespace": "batch", "deployment": "completions-tgi", "pod": "completions-tgi-0",
           "container": "inferwatch", "engine": "tgi",
           "model": "mistralai/Mistral-7B-Instruct-v0.2"}  # fmt: skip

    # chat-availability: 0.05% errors over the last 30 days, 10% before.
    total, errors = counters(end, 30, 10_000, 5, 1000, 1e7)
    stops = [(t, v - e) for (t, v), (_, e) in zip(total, errors, strict=True)]
    finished = Family("llm_requests_finished", "counter")
    finished.add({**where, "reason": "stop"}, stops)
    finished.add({**where, "reason": "error"}, errors)

    # completions-latency (28 days): 4% over 8.52s in the last 28 days, 50% before.
    count, slow = counters(end, 28, 1000, 40, 500, 1e6)
    e2e = Family("llm_request_duration_seconds", "unknown")
    e2e.add({"__name__": "llm_request_duration_seconds_count", **tgi}, count)
    e2e.add(
        {"__name__": "llm_request_duration_seconds_bucket", **tgi, "le": "8.52226929923929"},
        [(t, n - s) for (t, n), (_, s) in zip(count, slow, strict=True)],
    )
    return openmetrics([finished, e2e])


def test_error_budgets_over_a_month_of_history(
    prometheus_factory: Callable[..., Prometheus], tmp_path: Path
) -> None:
    # Whole steps, ending 10 minutes ago: no 5m rate evaluated now reaches into the history, so
    # every window reads backfilled rates only.
    end = (time.time() // STEP - 4) * STEP
    source = prometheus_factory(history=history(end))
    blocks = tmp_path / "rule-blocks"
    promtool.run(
        "tsdb", "create-blocks-from", "rules", "--quiet", f"--url={source.url}",
        f"--start={int(end - DAYS * 86400)}", f"--end={int(end)}",
        f"--eval-interval={EVAL}s", f"--output-dir={blocks}", BACKFILL_RULES,
    )  # fmt: skip
    source.stop()
    created = [b for b in blocks.iterdir() if (b / "meta.json").is_file()]
    assert created, "promtool wrote no blocks for the rate rules"

    # The same storage (the raw history) with the rule blocks added, and the rules loaded.
    for block in created:
        shutil.copytree(block, source.storage / block.name)
    prom = Prometheus(tmp_path / "prometheus", rule_files=[SLO_RULES], storage=source.storage)
    prom.start()
    try:
        check_budgets(prom)
    finally:
        prom.stop()


def check_budgets(prom: Prometheus) -> None:
    def value(name: str, slo: str) -> float:
        result = prom.wait_for(f'{name}{{slo="{slo}"}}', timeout=60)
        (sample,) = result
        return sample.value

    expected = {
        # 1 - error ratio over the period / error budget
        "chat-availability": (c.slo_error_ratio("30d"), 0.0005, 1 - 0.0005 / 0.001),
        "completions-latency": (c.slo_error_ratio("28d"), 0.04, 1 - 0.04 / 0.05),
    }
    for slo, (ratio_name, ratio, remaining) in expected.items():
        assert math.isclose(value(ratio_name, slo), ratio, rel_tol=1e-9), slo
        got = value(c.SLO_ERROR_BUDGET_REMAINING, slo)
        assert math.isclose(got, remaining, rel_tol=1e-9), (slo, got)
    assert value(c.SLO_OBJECTIVE, "completions-latency") == 0.95
    assert value(c.SLO_PERIOD_DAYS, "completions-latency") == 28
    # The SLI's own query (the one the SLO service runs) agrees with the recorded ratio, and over
    # 30 days it would include the slow days: 28 is what completions-latency is read over.
    specs = {s.name: s for s in slo_spec.load_all([build.EXAMPLE_SLOS])}
    spec = specs["completions-latency"]
    assert math.isclose(prom.value(slo_rules.sli_error_ratio(spec, "28d")), 0.04, rel_tol=1e-9)
    thirty = prom.value(slo_rules.sli_error_ratio(spec, "30d"))
    assert math.isclose(thirty, (28 * 0.04 + 2 * 0.5) / 30, rel_tol=0.01), thirty
    # No data, no budget: chat-ttft has none, and its budget is absent, never 100% left.
    assert prom.query(f'{c.SLO_ERROR_BUDGET_REMAINING}{{slo="chat-ttft"}}') == []
    # A steady burn under 1x raises nothing.
    firing = [a for a in prom.alerts() if a["labels"]["alertname"] == c.SLO_BUDGET_BURN]
    assert firing == []
