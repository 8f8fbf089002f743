"""`promtool test rules` for every alert, and a check that no alert goes without its tests.

An alert rule is identified by its name, severity and (for SLO alerts) SLO. Each needs, in
tests/promtool/: a check where it fires, with all labels and annotations, preceded one
evaluation earlier by a check where it does not (its `for` boundary), and a test group in which
it is checked and never expected (a case where it must not fire).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from inferwatch.alerts import conventions, promql
from inferwatch.alerts.config import AlertConfig
from tests.conftest import ROOT
from tests.harness import promtool

TESTS = ROOT / "tests" / "promtool"
GENERATED = ROOT / "alerts" / "generated" / "rules"
TEST_FILES = sorted(TESTS.glob("*.test.yaml"))

Key = tuple[str, str, str]  # alertname, severity, slo ("" outside SLOs)
FULL_ANNOTATIONS = {"summary", "description", "runbook_url"}


@dataclass
class GroupChecks:
    """The alert checks of one promtool test group."""

    where: str
    interval: int  # seconds between rule evaluations
    expected: dict[tuple[str, int], set[Key]]  # (alertname, eval time) -> alerts expected

    def checked(self, key: Key) -> bool:
        return any(name == key[0] for name, _ in self.expected)

    def ever_expects(self, key: Key) -> bool:
        return any(key in keys for keys in self.expected.values())

    def fires_at_boundary(self, key: Key) -> bool:
        """Expected at some time, and checked and not expected one evaluation before."""
        for (name, at), keys in self.expected.items():
            before = self.expected.get((name, at - self.interval))
            if key in keys and before is not None and key not in before:
                return True
        return False


def alert_rules(rule_files: list[Path]) -> set[Key]:
    keys = set()
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    keys.add(_key(rule["alert"], rule["labels"]))
    return keys


def _key(alertname: str, labels: dict) -> Key:
    return (alertname, labels.get("severity", ""), labels.get("slo", ""))


def read_groups(test_files: list[Path]) -> tuple[list[GroupChecks], list[str]]:
    groups, problems = [], []
    for path in test_files:
        doc = yaml.safe_load(path.read_text())
        interval = promql.seconds(doc.get("evaluation_interval", "1m"))
        for n, group in enumerate(doc["tests"]):
            where = f"{path.name}: {group.get('name') or f'test group {n}'}"
            if not group.get("name"):
                problems.append(f"{where}: give the test group a sentence as its name")
            expected: dict[tuple[str, int], set[Key]] = {}
            for check in group.get("alert_rule_test", []):
                at = promql.seconds(check["eval_time"])
                keys = expected.setdefault((check["alertname"], at), set())
                for alert in check.get("exp_alerts") or []:
                    keys.add(_key(check["alertname"], alert.get("exp_labels", {})))
                    if set(alert.get("exp_annotations", {})) != FULL_ANNOTATIONS:
                        problems.append(f"{where}: {check['alertname']} at {at}s: annotations?")
            groups.append(GroupChecks(where, interval, expected))
    return groups, problems


def check(rule_files: list[Path], test_files: list[Path]) -> list[str]:
    """What is missing: alerts without a firing test at their boundary, or a silent one."""
    groups, missing = read_groups(test_files)
    for key in sorted(alert_rules(rule_files)):
        if not any(g.fires_at_boundary(key) for g in groups):
            missing.append(f"{key}: no test where it fires, checked one evaluation before")
        if not any(g.checked(key) and not g.ever_expects(key) for g in groups):
            missing.append(f"{key}: no test where it must not fire")
    return missing


def test_every_alert_has_a_firing_and_a_silent_promtool_test() -> None:
    rule_files = sorted(GENERATED.glob("*.rules.yaml"))
    assert len(alert_rules(rule_files)) >= 20
    assert check(rule_files, TEST_FILES) == []


def test_an_alert_without_tests_is_reported(tmp_path: Path) -> None:
    extra = tmp_path / "extra.rules.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "x",
                        "rules": [
                            {
                                "alert": "Untested",
                                "expr": "vector(1)",
                                "labels": {"severity": "info"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    missing = check([*sorted(GENERATED.glob("*.rules.yaml")), extra], TEST_FILES)
    assert missing == [
        "('Untested', 'info', ''): no test where it fires, checked one evaluation before",
        "('Untested', 'info', ''): no test where it must not fire",
    ]


def test_a_firing_check_without_the_check_before_it_does_not_count(tmp_path: Path) -> None:
    rule_files = sorted(GENERATED.glob("*.rules.yaml"))
    doc = yaml.safe_load((TESTS / "gpu-alerts.test.yaml").read_text())
    for group in doc["tests"]:
        group["alert_rule_test"] = [
            c for c in group["alert_rule_test"] if c["eval_time"] not in ("1m", "14m")
        ]
    broken = tmp_path / "gpu-alerts.test.yaml"
    broken.write_text(yaml.safe_dump(doc))
    others = [f for f in TEST_FILES if f.name != "gpu-alerts.test.yaml"]
    missing = check(rule_files, [*others, broken])
    assert (
        "('LLMGPUXidError', 'critical', ''): no test where it fires, checked one evaluation "
        "before" in missing
    )
    assert any(m.startswith("('LLMGPUMemoryNearlyFull', 'warning', '')") for m in missing)


def ordered_groups(groups: list[dict]) -> list[str]:
    """The groups whose evaluation order matters, in the order promtool must evaluate them: the
    alert groups, every group reading a series another group records (a histogram's quantiles
    read its bucket shards, the advisor's window figures the per-deployment series), and the
    groups they read, recursively; recording groups in file order, then the alert groups."""
    recorders: dict[str, set[str]] = {}
    for g in groups:
        for r in g["rules"]:
            if "record" in r:
                recorders.setdefault(r["record"], set()).add(g["name"])

    def reads(group: dict) -> set[str]:
        text = " ".join(r["expr"] for r in group["rules"])
        return {
            other
            for record, names in recorders.items()
            if re.search(rf"(?<![\w:]){re.escape(record)}(?![\w:])", text)
            for other in names - {group["name"]}
        }

    read_by = {g["name"]: reads(g) for g in groups}
    needed = {
        g["name"] for g in groups if read_by[g["name"]] or any("alert" in r for r in g["rules"])
    }
    pending = list(needed)
    while pending:
        for producer in read_by[pending.pop()] - needed:
            needed.add(producer)
            pending.append(producer)
    names = [g["name"] for g in groups if g["name"] in needed]
    return sorted(names, key=lambda g: (not g.endswith(".rules"), names.index(g)))


def _rule_groups(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [
        g
        for rule_file in doc["rule_files"]
        for g in yaml.safe_load((path.parent / rule_file).read_text())["groups"]
    ]


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_every_rule_group_has_a_fixed_evaluation_order(path: Path) -> None:
    """promtool evaluates groups in random order unless told: every group before those that
    read what it records (at the same time step), then the alert groups. Groups nothing reads
    may go unlisted."""
    expected = ordered_groups(_rule_groups(path))
    # promtool ignores names it does not find, so a group may be listed before it is committed.
    order = [
        g for g in yaml.safe_load(path.read_text()).get("group_eval_order", []) if g in expected
    ]
    listed = "".join(f"\n  - {g}" for g in expected)
    assert order == expected, (
        f"{path.name}: list the recording groups in the order they read each other, then the "
        f"alert groups:\ngroup_eval_order:{listed}"
    )


def test_the_order_puts_bucket_shards_before_the_quantiles_that_read_them() -> None:
    groups = _rule_groups(TESTS / "engine-alerts.test.yaml")
    order = ordered_groups(groups)
    family = "llm_time_to_first_token_seconds"
    count = AlertConfig().bucket_shards
    shards = [conventions.bucket_shard_group(family, k) for k in range(1, count + 1)]
    quantiles = conventions.histogram_group(family)
    assert set(shards) <= set(order)
    assert max(order.index(s) for s in shards) < order.index(quantiles)
    assert order.index(quantiles) < order.index(conventions.GROUP_ENGINE_ALERTS)
    # The advisor's window figures read the per-deployment series and the per-model rates.
    advisor = ordered_groups(_rule_groups(TESTS / "advisor-rules.test.yaml"))
    assert advisor[-1] == conventions.GROUP_ADVISOR_WINDOW_RULES
    read = {
        conventions.GROUP_DEPLOYMENT_RULES,
        conventions.GROUP_DEPLOYMENT_GPU_RULES,
        conventions.GROUP_MODEL_RULES,
        *shards,
    }
    assert read <= set(advisor)


@pytest.mark.prometheus
@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_unit_tests_pass(path: Path) -> None:
    output = promtool.test_rules(path)
    assert "SUCCESS" in output
