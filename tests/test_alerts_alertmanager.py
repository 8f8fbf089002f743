"""The example Alertmanager configuration: valid, routes every alert by severity, groups by
namespace and model, and inhibits a warning under the critical alert of the same name.

Checked with `amtool` and with a real Alertmanager (Debian's, started by the harness) whose
receivers are pointed at webhook receivers in the test.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_tool
from tests.harness.alertmanager import Alertmanager, WebhookReceiver

CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = sorted((ROOT / "alerts" / "generated" / "rules").glob("*.rules.yaml"))
RECEIVER_OF = {"critical": "page", "warning": "ticket", "info": "none"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("amtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def generated_alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_amtool_accepts_the_example() -> None:
    run = amtool("check-config", str(CONFIG))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_generated_alert_routes_by_its_severity() -> None:
    seen = set()
    for rule in generated_alerts():
        labels = {"alertname": rule["alert"], "namespace": "llm", "model": "m", **rule["labels"]}
        key = (rule["alert"], rule["labels"]["severity"])
        if key in seen:
            continue
        seen.add(key)
        receiver = RECEIVER_OF[rule["labels"]["severity"]]
        run = amtool(
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receiver}",
            *(f"{k}={v}" for k, v in labels.items()),
        )
        assert run.returncode == 0, f"{key}: {run.stdout}{run.stderr}"
    assert {severity for _, severity in seen} == {"critical", "warning"}


def test_an_alert_without_severity_still_reaches_a_ticket() -> None:
    run = amtool("config", "routes", "test", f"--config.file={CONFIG}", "alertname=Custom")
    assert run.stdout.strip() == "ticket"


def test_grouping_and_inhibition_use_labels_the_alerts_carry() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    alerts = generated_alerts()
    carried = {"alertname"}
    for rule in alerts:
        carried |= set(rule["labels"])
        carried |= {m.strip() for part in _grouping_labels(rule["expr"]) for m in part.split(",")}
    assert set(config["route"]["group_by"]) == {"namespace", "model"}
    (inhibit,) = config["inhibit_rules"]
    assert set(inhibit["equal"]) <= carried | {"gpu", "pod", "deployment", "slo"}
    # Inhibition only makes sense where one alert name has both severities.
    tiers: dict[str, set[str]] = {}
    for rule in alerts:
        tiers.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    both = sorted(name for name, s in tiers.items() if {"critical", "warning"} <= s)
    assert both == ["LLMGPUXidError", "LLMRequestErrorRatioHigh", "LLMSLOErrorBudgetBurn"]


def _grouping_labels(expr: str) -> list[str]:
    return re.findall(r"by \(([^)]*)\)", expr)


def test_the_test_copy_changes_only_webhook_urls_and_waits(
    hooks: dict[str, WebhookReceiver],
) -> None:
    original = yaml.safe_load(CONFIG.read_text())
    config = config_for(hooks)
    assert [r["name"] for r in config["receivers"]] == ["page", "ticket", "none"]
    assert config["inhibit_rules"] == original["inhibit_rules"]
    for doc in (config, original):
        for route in (doc["route"], *doc["route"]["routes"]):
            for key in ("group_wait", "group_interval"):
                route.pop(key, None)
    assert config["route"] == original["route"]


def config_for(hooks: dict[str, WebhookReceiver]) -> dict[str, Any]:
    """The example, with its webhooks pointed at `hooks` and its waits cut to test speed.

    Routes, matchers, grouping and inhibition stay exactly as written.
    """
    config = copy.deepcopy(yaml.safe_load(CONFIG.read_text()))
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = hooks[receiver["name"]].url
    for route in [config["route"], *config["route"]["routes"]]:
        for key, value in (("group_wait", "200ms"), ("group_interval", "1s")):
            if key in route:
                route[key] = value
    return config


@pytest.fixture
def hooks() -> Iterator[dict[str, WebhookReceiver]]:
    started = {name: WebhookReceiver().start() for name in ("page", "ticket")}
    yield started
    for hook in started.values():
        hook.stop()


@pytest.fixture
def example_alertmanager(
    alertmanager_factory: Callable[..., Alertmanager], hooks: dict[str, WebhookReceiver]
) -> Alertmanager:
    return alertmanager_factory(config=config_for(hooks))


def names(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((a["labels"]["alertname"], a["labels"]["severity"]) for a in alerts)


def test_critical_pages_warning_tickets_and_the_warning_under_its_critical_is_inhibited(
    example_alertmanager: Alertmanager, hooks: dict[str, WebhookReceiver]
) -> None:
    where = {"namespace": "llm", "deployment": "chat-vllm", "model": "llama-3-8b"}
    example_alertmanager.post_alert(
        {"alertname": "LLMRequestErrorRatioHigh", "severity": "critical", **where},
        {"summary": "Too many requests to a model finish with an error or an abort."},
    )
    hooks["page"].wait_for(lambda alerts: alerts, timeout=20)
    # The same alert at warning level, while its critical fires: inhibited. A warning of
    # another name on the same model: a ticket. The same name on another model: a ticket.
    example_alertmanager.post_alert(
        {"alertname": "LLMRequestErrorRatioHigh", "severity": "warning", **where}
    )
    example_alertmanager.post_alert(
        {"alertname": "LLMKVCacheNearlyFull", "severity": "warning", "pod": "chat-vllm-0", **where}
    )
    example_alertmanager.post_alert(
        {
            "alertname": "LLMRequestErrorRatioHigh",
            "severity": "warning",
            **where,
            "model": "qwen-7b",
        }
    )
    tickets = hooks["ticket"].wait_for(lambda alerts: len(alerts) >= 2, timeout=20)
    assert names(hooks["page"].alerts()) == [("LLMRequestErrorRatioHigh", "critical")]
    assert sorted((a["labels"]["alertname"], a["labels"]["model"]) for a in tickets) == [
        ("LLMKVCacheNearlyFull", "llama-3-8b"),
        ("LLMRequestErrorRatioHigh", "qwen-7b"),
    ]
    # Grouped by namespace and model: one notification per model.
    groups = {
        tuple(sorted(n["groupLabels"].items())): n["receiver"]
        for n in hooks["ticket"].notifications
    }
    assert set(groups) == {
        (("model", "llama-3-8b"), ("namespace", "llm")),
        (("model", "qwen-7b"), ("namespace", "llm")),
    }
    inhibited = [
        a
        for a in example_alertmanager.alerts()
        if a["labels"]["alertname"] == "LLMRequestErrorRatioHigh"
        and a["labels"]["severity"] == "warning"
        and a["labels"]["model"] == "llama-3-8b"
    ]
    assert inhibited and inhibited[0]["status"]["state"] == "suppressed"
    assert inhibited[0]["status"]["inhibitedBy"]


def test_info_alerts_notify_no_one(
    example_alertmanager: Alertmanager, hooks: dict[str, WebhookReceiver]
) -> None:
    example_alertmanager.post_alert({"alertname": "Note", "severity": "info", "namespace": "llm"})
    example_alertmanager.post_alert({"alertname": "Other", "severity": "warning", "namespace": "x"})
    hooks["ticket"].wait_for(lambda alerts: alerts, timeout=20)
    assert names(hooks["ticket"].alerts()) == [("Other", "warning")]
    assert hooks["page"].alerts() == []
    held = {a["labels"]["alertname"]: a["receivers"] for a in example_alertmanager.alerts()}
    assert [r["name"] for r in held["Note"]] == ["none"]
