"""docs/runbooks.md: a section per alert, where its runbook_url points, with no stale names."""

from __future__ import annotations

import re

import yaml

from inferwatch.alerts import conventions
from inferwatch.alerts.config import AlertConfig
from tests.conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks.md"
RULES = sorted((ROOT / "alerts" / "generated" / "rules").glob("*.rules.yaml"))


def rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def sections() -> dict[str, str]:
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_exactly_one_section_with_the_three_parts() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    found = sections()
    assert set(found) == alerts
    for name, body in found.items():
        for part in ("**Meaning.**", "**Confirm.**", "**Change.**"):
            assert body.count(part) == 1, f"{name}: {part}"


def test_runbook_urls_point_at_the_sections() -> None:
    anchors = {github_anchor(h) for h in sections()}
    for rule in rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert url == AlertConfig().runbook(rule["alert"])
            assert url.split("#", 1)[1] in anchors


def test_recorded_series_named_in_the_runbooks_exist() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    text = RUNBOOKS.read_text()
    named = set(re.findall(r"\b(?:model|pod|gpu|slo):[a-z_0-9]+:[a-z_0-9]+", text))
    assert named, "the runbooks should point at recorded series"
    assert named <= recorded, f"not recorded: {sorted(named - recorded)}"


def test_default_thresholds_in_the_runbooks_match_the_config() -> None:
    config = AlertConfig()
    body = {name: " ".join(text.split()) for name, text in sections().items()}
    assert f"{config.kv_cache_usage_ratio:.0%}" in body[conventions.KV_CACHE_NEARLY_FULL]
    assert f"{config.gpu_memory_used_ratio:.0%}" in body[conventions.GPU_MEMORY_NEARLY_FULL]
    assert f"{config.ttft_p95_seconds:g} seconds" in body[conventions.TTFT_HIGH]
    assert f"{config.tpot_p95_seconds * 1000:g} ms" in body[conventions.TPOT_HIGH]
    assert f"{config.error_ratio_warning:.0%}" in body[conventions.ERROR_RATIO_HIGH]
    assert f"{config.error_ratio_critical:.0%}" in body[conventions.ERROR_RATIO_HIGH]
    codes = ", ".join(map(str, config.xid_critical_codes))
    assert codes in body[conventions.GPU_XID_ERROR]
