"""The generated rule files: up to date, accepted by promtool, and the same in both forms."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inferwatch import schema
from inferwatch.alerts import build, catalog, conventions, recording, rules, slo_rules, windows
from inferwatch.alerts.config import AlertConfig
from inferwatch.slo import spec as slo_spec
from tests.conftest import ROOT
from tests.harness import promtool

GENERATED = ROOT / "alerts" / "generated"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return build.render()


def test_committed_files_are_up_to_date(files: dict[str, str]) -> None:
    stale = build.stale(files, GENERATED)
    assert not stale, f"regenerate with `inferwatch alerts build` and commit: {stale}"


def test_cli_check_reports_stale_files(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "inferwatch.cli", "alerts", "build", "--out", str(tmp_path)]
    run = lambda *extra: subprocess.run(  # noqa: E731
        [*command, *extra], capture_output=True, text=True, check=False
    )
    missing = run("--check")
    assert missing.returncode == 1 and "out of date" in missing.stderr
    written = run()
    assert written.returncode == 0, written.stderr
    assert run("--check").returncode == 0
    (tmp_path / "rules" / "inferwatch-alerts.rules.yaml").write_text("edited\n")
    (tmp_path / "rules" / "extra.yaml").write_text("groups: []\n")
    stale = run("--check")
    assert stale.returncode == 1
    assert "rules/extra.yaml" in stale.stderr and "inferwatch-alerts.rules.yaml" in stale.stderr
    assert run().returncode == 0 and not (tmp_path / "rules" / "extra.yaml").exists()


def test_promtool_check_rules_passes_on_every_plain_file() -> None:
    plain = sorted((GENERATED / "rules").glob("*.yaml"))
    assert len(plain) == 3
    output = promtool.check_rules(*plain)
    assert output.count("SUCCESS") == len(plain)


def test_prometheusrule_spec_is_the_plain_rule_file() -> None:
    for path in sorted((GENERATED / "prometheusrule").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["kind"] == "PrometheusRule"
        assert obj["metadata"]["name"] == path.stem
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "inferwatch"
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
        plain = yaml.safe_load((GENERATED / "rules" / f"{path.stem}.rules.yaml").read_text())
        assert obj["spec"] == plain


def all_rules() -> list[dict]:
    out = []
    for path in sorted((GENERATED / "rules").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(group["rules"])
    return out


def test_every_alert_has_the_same_shape() -> None:
    alerts = [r for r in all_rules() if "alert" in r]
    assert len(alerts) >= 15
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning", "info")
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}
        assert "{{" not in annotations["summary"]
        assert "{{ $labels." in annotations["description"]
        anchor = alert["alert"].lower()
        assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{anchor}")


def test_alerts_cover_what_the_issue_lists() -> None:
    names = {r["alert"] for r in all_rules() if "alert" in r}
    assert names == {
        conventions.KV_CACHE_NEARLY_FULL,
        conventions.QUEUE_GROWING,
        conventions.PREEMPTIONS_RISING,
        conventions.TTFT_HIGH,
        conventions.TPOT_HIGH,
        conventions.ERROR_RATIO_HIGH,
        conventions.TARGET_DOWN,
        conventions.ENGINE_METRICS_DOWN,
        conventions.GPU_METRICS_DOWN,
        conventions.GPU_XID_ERROR,
        conventions.GPU_MEMORY_NEARLY_FULL,
        conventions.GPU_IDLE_WHILE_QUEUED,
        conventions.METRICS_ABSENT,
        conventions.SLO_BUDGET_BURN,
    }


def test_recording_rules_follow_level_metric_operations() -> None:
    records = [r["record"] for r in all_rules() if "record" in r]
    for name in records:
        level, metric, operations = name.split(":")
        assert level in conventions.LEVELS and metric and operations
    # Every family name inside a recorded name comes from the schema.
    metrics = {n.split(":")[1] for n in records if n.split(":")[0] != "slo"}
    known = {f.name for f in (*schema.FAMILIES, *schema.EXPORTER_FAMILIES)} | {
        f.name.removesuffix("_total") for f in schema.FAMILIES
    }
    known |= {f"{f.name}_bucket" for f in schema.HISTOGRAMS} | {
        f"{f.name}_count" for f in schema.HISTOGRAMS
    }
    assert metrics - known == {"llm_request_errors", "llm_gpu_memory_used", "llm_gpu_memory_free"}


def test_every_metric_an_expression_reads_is_in_the_schema_or_recorded() -> None:
    recorded = {r["record"] for r in all_rules() if "record" in r}
    known = recorded | {"up"}
    for family in (*schema.FAMILIES, *schema.EXPORTER_FAMILIES):
        known |= set(family.sample_names)
    functions = {
        "sum", "max", "min", "avg", "rate", "deriv", "histogram_quantile", "vector", "group",
        "present_over_time", "sum_over_time", "by", "and", "or", "unless", "on",
        "avg_over_time", "quantile_over_time", "max_over_time", "min_over_time",
        "count_over_time",
    }  # fmt: skip
    for rule in all_rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not names
        expr = re.sub(r"\[[^\]]*\]", "", expr)  # neither are range durations
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - functions
        names = {n for n in names if not re.fullmatch(r"[a-z_]+", n) or n in known or "_" in n}
        labels = set(re.findall(r"[{,(]\s*([a-z_]+)\s*(?:=|!=|=~|!~)", rule["expr"]))
        grouping = set(re.findall(r"(?:by|on) \(([^)]*)\)", rule["expr"]))
        grouped = {label.strip() for g in grouping for label in g.split(",")}
        unknown = names - known - labels - grouped
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_buckets_aggregate_within_one_engine() -> None:
    """Bucket layouts differ between engines: keep `engine`, or select one engine and one `le`."""
    pattern = r"sum by \(([^)]*)\) \(rate\(\w+_bucket(\{[^}]*\})?"
    for rule in all_rules():
        for match in re.finditer(pattern, rule["expr"]):
            labels = {label.strip() for label in match.group(1).split(",")}
            selector = match.group(2) or ""
            one_bucket = 'le="' in selector and 'engine="' in selector
            assert one_bucket or {"engine", "le"} <= labels, rule.get("record")


def test_objectives_stay_readable() -> None:
    text = (GENERATED / "rules" / "inferwatch-slos.rules.yaml").read_text()
    assert "(1 - 0.999)" in text and "(1 - 0.99)" in text and "(1 - 0.95)" in text
    assert not re.search(r"\d\.\d*0000000|\d\.\d*9999999", text), "float noise in PromQL"


def test_selector_override_reaches_every_raw_series() -> None:
    config = AlertConfig(selector='namespace=~"llm-.*"')
    groups = recording.groups(config) + catalog.groups(config)
    for group in groups:
        for rule in group.rules:
            for match in re.finditer(
                r"\b(llm_[a-z_]+|inferwatch_exporter_[a-z_]+|up)\b(\{[^}]*\})?", rule.expr
            ):
                if ":" in rule.expr[max(0, match.start() - 1) : match.start()]:
                    continue  # part of a recorded name
                assert match.group(2) and 'namespace=~"llm-.*"' in match.group(2), (
                    f"{group.name}: {match.group(0)} ignores the selector"
                )


def test_config_overrides_change_thresholds_and_durations() -> None:
    config = AlertConfig(kv_cache_usage_ratio=0.9, kv_cache_for="30m")
    (kv,) = [a for a in catalog.engine_alerts(config).alerts() if a.name == "LLMKVCacheNearlyFull"]
    assert kv.expr.endswith("> 0.9") and kv.for_ == "30m"
    assert "above 90% for 30m" in kv.description


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"selector": 'namespace="x"} or vector(1) #'}, "cannot read matchers"),
        ({"kv_cache_for": "15 minutes"}, "not a Prometheus duration"),
        ({"kv_cache_usage_ratio": 1.5}, "less than or equal to 1"),
        ({"kv_cache_threshold": 0.9}, "Extra inputs are not permitted"),
        ({"runbook_url": "https://example.com/runbooks"}, "must contain {anchor}"),
        ({"error_reasons": ["timeout"]}, "choose among"),
    ],
)
def test_bad_overrides_are_refused(override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AlertConfig(**override)


@pytest.mark.parametrize(
    ("bad", "error", "good", "field", "value"),
    [
        ("ttft_p95_seconds: 1.0\nkv_cache_for: soon\n", "kv_cache_for: .*duration",
         "ttft_p95_seconds: 1.5\n", "ttft_p95_seconds", 1.5),
        ("bucket_shards: 0\n", "bucket_shards: .*from 1", "bucket_shards: 4\n",
         "bucket_shards", 4),
    ],
)  # fmt: skip
def test_config_file_errors_name_file_and_field(
    tmp_path: Path, bad: str, error: str, good: str, field: str, value: object
) -> None:
    from inferwatch.alerts import config as alert_config

    path = tmp_path / "overrides.yaml"
    path.write_text(bad)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: {error}"):
        alert_config.load(path)
    path.write_text(good)
    assert getattr(alert_config.load(path), field) == value


def test_cli_refuses_a_bad_spec_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "slos.yaml"
    bad.write_text(
        "slos:\n  - name: x\n    namespace: llm\n    deployment: d\n    engine: vllm\n"
        "    sli: {type: latency, metric: llm_time_to_first_token_seconds, threshold: 0.3}\n"
        "    objective: 0.99\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "inferwatch.cli", "alerts", "build", "--out", str(tmp_path / "o"),
         "--slo", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert f"{bad}:6: slos[0].sli.threshold: 0.3 is not a bucket boundary" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_objective_too_low_for_the_page_alert_is_refused() -> None:
    (spec,) = slo_spec.parse(
        "slos:\n  - {name: x, namespace: llm, deployment: d, sli: {type: availability}, "
        "objective: 0.9}\n"
    )
    with pytest.raises(slo_rules.UnreachableAlert, match=r"use an objective above 0\.9306"):
        slo_rules.slo_group(spec)


def test_rule_shapes_are_enforced() -> None:
    with pytest.raises(ValueError, match="level:metric:operations"):
        rules.Recording("llm_thing_rate", "x")
    with pytest.raises(ValueError, match="static"):
        rules.Alert("A", "x", "warning", "{{ $value }}", "{{ $labels.pod }}")
    with pytest.raises(ValueError, match="severity"):
        rules.Alert("A", "x", "page", "s", "{{ $labels.pod }}")
    with pytest.raises(ValueError, match="must name where"):
        rules.Alert("A", "x", "warning", "s", "static")


def test_window_table_is_loaded_from_its_data_file() -> None:
    assert [(w.severity, w.long, w.short) for w in windows.WINDOWS] == [
        ("critical", "1h", "5m"),
        ("critical", "6h", "30m"),
        ("warning", "1d", "2h"),
        ("warning", "3d", "6h"),
    ]
    assert windows.needed() == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def test_free_text_in_an_slo_description_is_printed_never_evaluated(tmp_path: Path) -> None:
    (spec,) = slo_spec.parse(
        "slos:\n  - name: x\n    description: 'p95 {{ $value }} and }} stay text'\n"
        "    namespace: llm\n    deployment: d\n    sli: {type: availability}\n"
        "    objective: 0.999\n"
    )
    group = slo_rules.slo_group(spec)
    (page, _ticket) = group.alerts()
    assert page.description.endswith(
        'The SLO: p95 {{ "{{" }} $value {{ "}}" }} and {{ "}}" }} stay text'
    )
    path = tmp_path / "x.rules.yaml"
    path.write_text(build.dump(rules.rule_file([group], AlertConfig().runbook)))
    promtool.check_rules(path)  # the template parses
    test = tmp_path / "x.test.yaml"
    test.write_text(
        yaml.safe_dump(
            {
                "rule_files": [path.name],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": 'llm_requests_finished_total{namespace="llm",'
                                'deployment="d",reason="error"}',
                                "values": "0+50x10",
                            },
                            {
                                "series": 'llm_requests_finished_total{namespace="llm",'
                                'deployment="d",reason="stop"}',
                                "values": "0+50x10",
                            },
                        ],
                        "alert_rule_test": [
                            {
                                "eval_time": "3m",
                                "alertname": "LLMSLOErrorBudgetBurn",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "critical",
                                            "slo": "x",
                                            "namespace": "llm",
                                            "deployment": "d",
                                        },
                                        "exp_annotations": {
                                            "summary": page.summary,
                                            "description": (
                                                "SLO x of llm/d is burning its 30d error budget "
                                                "500x faster than its objective of 99.9% allows "
                                                "(page thresholds: 14.4x over 1h and 5m, 6x over "
                                                "6h and 30m). The SLO: p95 {{ $value }} and }} "
                                                "stay text"
                                            ),
                                            "runbook_url": AlertConfig().runbook(page.name),
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    promtool.test_rules(test)


def test_every_rule_reads_the_proxy_measured_families_once(files: dict[str, str]) -> None:
    """A family the proxy mode also measures, summed without a `source` matcher, counts the
    requests of an engine with a proxy in front of it twice."""
    names = "|".join(n for f in schema.PROXY_FAMILIES for n in f.sample_names)
    selection = re.compile(rf"(?<![\w:])({names})(\{{[^}}]*\}})?")
    checked = 0
    for path, text in files.items():
        for group in yaml.safe_load(text).get("groups", []) if path.endswith(".yaml") else []:
            for rule in group["rules"]:
                for m in selection.finditer(str(rule["expr"])):
                    checked += 1
                    assert m.group(2) and "source" in m.group(2), (path, rule, m.group(0))
    assert checked > 20  # the model rules, the histograms' bucket rates, the SLO rules
