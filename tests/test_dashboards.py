"""The dashboards offline: generated files up to date, Grafana's JSON Schema, structure, golden.

Queries are proven against a real Prometheus in test_dashboards_prometheus.py.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from inferwatch import schema
from inferwatch.cli import app
from inferwatch.dashboards import build, coverage, detail, fleet, lint, style, variables
from inferwatch.dashboards.schema import make_schema
from inferwatch.exporters import registry
from tests.conftest import ROOT, require_tool
from tests.harness import procs

GENERATED = ROOT / "dashboards" / "generated"
SCHEMAS = ROOT / "dashboards" / "schema" / "grafana"
KUBERNETES_VERSIONS = ("1.25", "1.32")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build.build_all()


def _validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((SCHEMAS / name).read_text()))


def _schema_errors(dashboard: dict[str, Any]) -> list[str]:
    """Every error of the dashboard and of each panel's options against Grafana's schemas."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in _validator("dashboard.json").iter_errors(dashboard)
    ]
    for panel in variables.panels(dashboard):
        kind = panel["type"]
        where = f"panel {panel['title']!r}"
        for e in _validator(f"{kind}.options.json").iter_errors(panel.get("options", {})):
            errors.append(f"{where} options {list(e.absolute_path)}: {e.message}")
        custom_schema = SCHEMAS / f"{kind}.fieldconfig.json"
        if custom_schema.exists():
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            for e in _validator(custom_schema.name).iter_errors(custom):
                errors.append(f"{where} fieldConfig.custom {list(e.absolute_path)}: {e.message}")
    return errors


# ---- generated artifacts ----------------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    """Regenerating changes nothing, and nothing stale lies next to the generated files."""
    expected = build.artifacts()
    committed = {
        str(p.relative_to(GENERATED)): p.read_text() for p in GENERATED.rglob("*") if p.is_file()
    }
    stale = sorted(set(committed) - set(expected))
    missing = sorted(set(expected) - set(committed))
    changed = sorted(k for k in expected if k in committed and committed[k] != expected[k])
    assert not (stale or missing or changed), (
        f"dashboards/generated is out of date (run `inferwatch dashboards build`): "
        f"changed {changed}, missing {missing}, stale {stale}"
    )


def test_json_is_deterministic_sorted_and_ends_with_a_newline(dashboards) -> None:
    first = build.artifacts()
    assert first == build.artifacts()
    for uid, data in dashboards.items():
        text = first[f"{uid}.json"]
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert (
            text
            == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
        assert json.loads(text) == data


def test_cli_build_writes_the_committed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for relative, text in build.artifacts().items():
        assert (tmp_path / relative).read_text() == (GENERATED / relative).read_text() == text
    assert len(result.output.splitlines()) == len(build.artifacts())


def test_cli_build_into_an_unwritable_place_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(blocker)])
    assert result.exit_code == 2
    assert "cannot write under" in result.output and "Traceback" not in result.output


def test_cli_build_without_the_dashboards_extra_says_which_to_install(
    monkeypatch, tmp_path: Path
) -> None:
    import inferwatch.dashboards as package

    loaded = [m for m in sys.modules if m.startswith(("grafanalib", "inferwatch.dashboards."))]
    for name in loaded:
        if name != "inferwatch.dashboards.cli":
            monkeypatch.delitem(sys.modules, name)
            monkeypatch.delattr(package, name.rpartition(".")[2], raising=False)
    monkeypatch.setitem(sys.modules, "grafanalib", None)  # as if not installed
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install 'inferwatch[dashboards]'" in result.output
    assert not (tmp_path / "out").exists()


def test_uids_are_stable_and_the_four_dashboards_exist(dashboards) -> None:
    assert list(dashboards) == [
        "inferwatch-fleet",
        "inferwatch-deployment",
        "inferwatch-gpu",
        "inferwatch-slo",
    ]
    for uid, data in dashboards.items():
        assert data["uid"] == uid and data["tags"][0] == "inferwatch"


# ---- Grafana's JSON Schema ------------------------------------------------------------------


@pytest.mark.parametrize("uid", list(build.BUILDERS))
def test_dashboard_matches_grafanas_schema(dashboards, uid: str) -> None:
    assert _schema_errors(dashboards[uid]) == []


def test_every_panel_type_used_has_an_options_schema(dashboards) -> None:
    """A panel type without a generated schema would go unchecked: make_schema must cover it."""
    used = {p["type"] for d in dashboards.values() for p in variables.panels(d)}
    generated = {name.split(".")[0] for name in make_schema.TARGETS}
    assert used <= generated, f"add {sorted(used - generated)} to make_schema.TARGETS"
    assert {f.name for f in SCHEMAS.glob("*.json")} == set(make_schema.TARGETS)


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda d: d.__setitem__("refresh", 30), "refresh"),
        (lambda d: d["panels"][1].__setitem__("gridPos", {"x": 0, "y": 0, "w": "4"}), "gridPos"),
        (lambda d: d["panels"][1].__setitem__("style", "dark"), "style"),
        (lambda d: d["panels"][1]["options"].pop("reduceOptions"), "reduceOptions"),
        (lambda d: d["templating"]["list"][1].__setitem__("type", "dropdown"), "templating"),
        (lambda d: d["panels"][1]["fieldConfig"]["defaults"].__setitem__("unit", 3), "unit"),
    ],
)
def test_schema_check_catches_what_grafana_would_not_load(dashboards, mutate, complaint) -> None:
    broken = copy.deepcopy(dashboards["inferwatch-fleet"])
    assert broken["panels"][1]["type"] == "stat"
    mutate(broken)
    errors = _schema_errors(broken)
    assert errors and any(complaint in e for e in errors), errors


def test_schema_files_name_their_source() -> None:
    package = json.loads((ROOT / "dashboards" / "schema" / "package.json").read_text())
    version = package["devDependencies"]["@grafana/schema"]
    for path in SCHEMAS.glob("*.json"):
        doc = json.loads(path.read_text())
        assert f"@grafana/schema {version}" in doc["$comment"], path.name
        assert doc["$schema"].startswith("http://json-schema.org/draft-07/")


# ---- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", list(build.BUILDERS))
def test_no_structural_problems(dashboards, uid: str) -> None:
    assert lint.problems(dashboards[uid]) == []


def _first_panel(data: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in data["panels"] if p.get("title") == title)


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda d: d["panels"][2]["gridPos"].update(x=0), "overlap"),
        (lambda d: d["panels"][2]["gridPos"].update(x=22), "outside"),
        (lambda d: d["panels"][2].__setitem__("id", d["panels"][1]["id"]), "share id"),
        (lambda d: d["panels"][1]["targets"][0].update(expr='up{pod="$pod"}'), "$pod"),
        (
            lambda d: d["panels"][1]["targets"][0].update(expr='up{namespace="$namespace"}'),
            "use it with =~",
        ),
        (lambda d: d["panels"][1]["datasource"].update(uid="P1809F7CD0C75ACF3"), "datasource"),
        (lambda d: d["panels"][1]["targets"][0].update(expr="llm_requests_wating"), "not a normal"),
        (lambda d: d["templating"]["list"].pop(0), "no $datasource"),
        (lambda d: d["panels"][1].pop("description"), "no description"),
        (lambda d: d.__setitem__("uid", "x" * 41), "uid"),
    ],
)
def test_lint_finds_broken_dashboards(dashboards, mutate, complaint) -> None:
    broken = copy.deepcopy(dashboards["inferwatch-fleet"])
    mutate(broken)
    with pytest.raises(lint.DashboardError, match=re.escape(complaint)):
        lint.check(broken)


def test_variable_used_before_it_is_defined_is_found(dashboards) -> None:
    broken = copy.deepcopy(dashboards["inferwatch-deployment"])
    templating = broken["templating"]["list"]
    templating[1], templating[2] = templating[2], templating[1]  # namespace after deployment
    assert any("not defined before it" in p for p in lint.problems(broken))


def test_datasource_is_a_variable_everywhere(dashboards) -> None:
    for data in dashboards.values():
        text = json.dumps(data)
        uids = set(re.findall(r'"uid": "([^"]*)"', text)) - {data["uid"]}
        assert uids == {"${datasource}"}
        assert data["templating"]["list"][0] == {
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "sort": 1,
            "type": "datasource",
        }


def _exprs(data: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in variables.panels(data) for t in p.get("targets", [])]


def test_quantiles_sum_buckets_by_le_within_one_engine(dashboards) -> None:
    """Bucket layouts differ between engines: every quantile keeps `le` and `engine`."""
    found = 0
    for data in dashboards.values():
        for expr in _exprs(data):
            for match in re.finditer(r"histogram_quantile\([\d.]+, sum by \(([^)]*)\)", expr):
                found += 1
                labels = [x.strip() for x in match.group(1).split(",")]
                assert labels[:2] == ["le", "engine"], expr
            if "_bucket" in expr:
                assert re.search(r"sum by \(le, engine[,)]", expr), expr
    assert found >= 12


def test_every_metric_a_query_names_is_in_the_schema(dashboards) -> None:
    names = set()
    for data in dashboards.values():
        for expr in _exprs(data):
            names |= coverage.families_in(expr)
    # Every family of the schema is shown somewhere but SM activity, which dcgm-exporter's
    # default counters leave out (a panel of it would sit empty on most clusters).
    assert names == {f.name for f in schema.FAMILIES} - {"llm_gpu_sm_active_ratio"}


def test_families_in_refuses_a_metric_outside_the_schema() -> None:
    with pytest.raises(coverage.UnknownMetricError, match="llm_kv_cache_usage_percent"):
        coverage.families_in("max(llm_kv_cache_usage_percent)")
    # Names inside label values and recording rules are not metrics of ours.
    assert coverage.families_in('llm_requests_waiting{model="llm_foo"}') == {"llm_requests_waiting"}
    assert coverage.families_in("slo:burn_rate:ratio_rate1h") == frozenset()
    assert coverage.families_in("rate(llm_request_duration_seconds_bucket[5m])") == {
        "llm_request_duration_seconds"
    }


def test_panel_ids_follow_titles_not_positions() -> None:
    query = style.Query("sum(llm_requests_waiting)")

    def panels(*titles: str) -> dict[str, int]:
        rows = [style.Row("r", [style.stat(t, "d", query, style.COUNT) for t in titles])]
        data = style.dashboard(uid="u", title="t", description="d", variables=(), rows=rows)
        return {p["title"]: p["id"] for p in data["panels"]}

    before = panels("a", "b", "c")
    after = panels("new", "a", "b", "c")
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == 5  # the row and four panels


def test_layout_wraps_rows_at_the_grid_width() -> None:
    query = style.Query("sum(llm_requests_waiting)")
    rows = [
        style.Row("one", [style.stat(f"s{i}", "d", query, style.COUNT, w=10) for i in range(3)]),
        style.Row("two", [style.stat("t", "d", query, style.COUNT, w=24, h=6)]),
    ]
    data = style.dashboard(uid="u", title="t", description="d", variables=(), rows=rows)
    pos = {p["title"]: (p["gridPos"]["x"], p["gridPos"]["y"]) for p in data["panels"]}
    assert pos == {
        "one": (0, 0),
        "s0": (0, 1),
        "s1": (10, 1),
        "s2": (0, 5),
        "two": (0, 9),
        "t": (0, 10),
    }
    with pytest.raises(ValueError, match="width 25"):
        style.stat("wide", "d", query, style.COUNT, w=25)


# ---- engines that do not report a family ----------------------------------------------------


def test_panels_say_which_engines_do_not_report_them(dashboards) -> None:
    ttft = frozenset({"llm_time_to_first_token_seconds"})
    missing = coverage.unreported(ttft)
    assert registry.ADAPTERS["tgi"].title in missing  # the premise: TGI has no TTFT histogram
    assert registry.ADAPTERS["vllm"].title not in missing
    panel = _first_panel(dashboards["inferwatch-deployment"], "Time to first token: p50, p90, p99")
    assert "Not reported by " in panel["description"]
    assert coverage.reported_in(panel["description"]) == missing
    no_value = panel["fieldConfig"]["defaults"]["noValue"]
    assert no_value == coverage.no_value(ttft) and "TGI" in no_value
    # A panel every engine can fill carries no such note.
    info = _first_panel(dashboards["inferwatch-deployment"], "Engine configuration")
    assert "Not reported" not in info["description"]
    assert "noValue" not in info["fieldConfig"]["defaults"]


def test_every_note_matches_the_adapters(dashboards) -> None:
    """Notes are derived from each query's families and the adapters' concepts, nothing else."""
    noted = 0
    for data in dashboards.values():
        for panel in variables.panels(data):
            families = frozenset().union(
                *(coverage.families_in(t["expr"]) for t in panel["targets"])
            )
            missing = coverage.unreported(families)
            assert coverage.reported_in(panel["description"]) == missing, panel["title"]
            for title, names in missing.items():
                engine = registry.ADAPTERS[coverage.engine_name(title)]
                variant = next((v for v in engine.variants if v.title == title), None)
                assert names
                for name in names:
                    concept = engine.concept(name)
                    if variant is None:
                        assert concept is None
                    else:  # the engine reports it, but not this server or build of it
                        assert concept is not None and not variant.reports(concept)
            noted += bool(missing)
    assert noted >= 10


def test_note_text_reads_back_for_every_engine() -> None:
    every = frozenset(f.name for f in schema.ENGINE_FAMILIES)
    missing = coverage.unreported(every)
    adapters = registry.ENGINE_ADAPTERS
    lacking = {a.title for a in adapters if any(a.concept(n) is None for n in every)}
    variants = {v.title for a in adapters for v in a.variants}
    assert lacking <= set(missing) <= lacking | variants
    assert "TensorRT-LLM on Triton" in missing
    assert coverage.reported_in(coverage.note(every)) == missing


def test_table_columns_an_engine_cannot_fill_say_so_per_column(dashboards) -> None:
    table = _first_panel(dashboards["inferwatch-fleet"], "Models")
    by_column = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in table["fieldConfig"]["overrides"]
    }
    ttft = frozenset({"llm_time_to_first_token_seconds"})
    assert by_column["TTFT p95"]["noValue"] == coverage.no_value(ttft)
    assert "noValue" not in by_column["Pods"]  # every engine states llm_engine_info
    assert "noValue" not in table["fieldConfig"]["defaults"]


def test_detail_dashboard_shows_every_latency_histogram(dashboards) -> None:
    titles = {p["title"] for p in dashboards["inferwatch-deployment"]["panels"]}
    for fam in schema.HISTOGRAMS:
        name = detail.LATENCY_TITLES[fam.name]
        assert {f"{name}: p50, p90, p99", f"{name}: distribution"} <= titles


# ---- golden -------------------------------------------------------------------------------------

GOLDEN_XID_ERRORS = {
    "datasource": {"type": "prometheus", "uid": "${datasource}"},
    "description": "Last XID error code each GPU reported (0: none). Any other value is a "
    "driver or hardware event; NVIDIA's XID catalogue says what each code means.",
    "fieldConfig": {
        "defaults": {
            "color": {"mode": "palette-classic"},
            "custom": {
                "axisLabel": "",
                "axisPlacement": "auto",
                "barAlignment": 0,
                "drawStyle": "line",
                "fillOpacity": 10,
                "gradientMode": "none",
                "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                "lineInterpolation": "linear",
                "lineWidth": 1,
                "pointSize": 5,
                "scaleDistribution": {"log": 2, "type": "linear"},
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"group": "A", "mode": "none"},
                "thresholdsStyle": {"mode": "dashed"},
            },
            "mappings": [],
            "min": 0,
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
            },
            "unit": "none",
        },
        "overrides": [],
    },
    "gridPos": {"h": 8, "w": 8, "x": 16, "y": 42},
    "hideTimeOverride": False,
    "id": 589181,
    "links": [],
    "options": {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "targets": [
        {
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": "max by (pod, gpu, gpu_instance) (llm_gpu_xid_errors{"
            'namespace="$namespace", deployment="$deployment", pod=~"$pod"})',
            "format": "time_series",
            "hide": False,
            "instant": False,
            "interval": "",
            "legendFormat": "{{pod}} GPU {{gpu}} {{gpu_instance}}",
            "range": True,
            "refId": "A",
        }
    ],
    "title": "XID errors",
    "transformations": [],
    "transparent": False,
    "type": "timeseries",
}


def test_golden_gpu_xid_errors_panel(dashboards) -> None:
    """One panel's JSON, exactly (a GPU panel: no engine note, so adding engines keeps it)."""
    assert _first_panel(dashboards["inferwatch-gpu"], "XID errors") == GOLDEN_XID_ERRORS


# ---- Kubernetes packaging and provisioning ------------------------------------------------------


def _configmaps() -> list[dict[str, Any]]:
    return [
        yaml.safe_load((GENERATED / "kubernetes" / f"{uid}.yaml").read_text())
        for uid in build.BUILDERS
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_configmaps_are_valid_kubernetes_objects(version: str) -> None:
    for configmap in _configmaps():
        kubernetes_validate.validate(configmap, version, strict=True)


def test_configmaps_carry_the_sidecar_label_and_the_exact_json(dashboards) -> None:
    for configmap, (uid, data) in zip(_configmaps(), dashboards.items(), strict=True):
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["name"] == uid
        ((key, text),) = configmap["data"].items()
        assert key == f"{uid}.json"
        assert text == (GENERATED / key).read_text() and json.loads(text) == data
        # Client-side `kubectl apply` keeps a copy in an annotation limited to 256 KiB.
        assert len(text.encode()) < 200_000


def test_kustomization_builds_every_configmap() -> None:
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(GENERATED / "kubernetes")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(out))
    assert names == sorted(build.BUILDERS)


def test_provisioning_file_points_grafana_at_the_json() -> None:
    doc = yaml.safe_load((GENERATED / "provisioning" / "inferwatch.yaml").read_text())
    (provider,) = doc["providers"]
    assert doc["apiVersion"] == 1
    assert provider["type"] == "file" and provider["options"]["path"] == build.PROVISIONED_PATH
    assert provider["folder"] == "inferwatch"


def test_fleet_and_detail_builders_are_the_registered_ones() -> None:
    assert build.BUILDERS[fleet.UID] is fleet.build
    assert build.BUILDERS[detail.UID] is detail.build


# ---- preview command: bad input ------------------------------------------------------------


def _preview(*args: str) -> Any:
    return CliRunner().invoke(app, ["dashboards", "preview", *args])


def test_preview_says_when_prometheus_is_not_there(tmp_path: Path) -> None:
    port = procs.free_port()
    result = _preview("--prometheus", f"http://127.0.0.1:{port}", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())


def test_preview_says_when_the_url_is_not_prometheus(tmp_path: Path, page_factory) -> None:
    page = page_factory("not prometheus\n")
    result = _preview("--prometheus", page.url, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "answered HTTP 501" in result.output and "not Prometheus' JSON" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus", "localhost:9090"], "expected an http:// or https:// URL"),
        (["--prometheus", "http://127.0.0.1:9", "--range", "5x"], "--range '5x'"),
        (["--prometheus", "http://127.0.0.1:9", "--range", "0s"], "must be positive"),
    ],
)
def test_preview_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = _preview(*args, "--out", str(tmp_path))
    assert result.exit_code == 2 and message in result.output, result.output
