"""`source="proxy"`: declared in the schema, written by the proxy mode, documented, and read by
the dashboards so that a request measured by an engine and by a proxy in front of it counts once.

The last test runs the real thing: a vLLM simulator behind a proxying sidecar (both its own
/metrics and the proxy measure every request) and an Ollama simulator behind one (only the
proxy does), requests sent through both proxies, and a real Prometheus scraping the sidecars.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from inferwatch import schema
from inferwatch.alerts import queries
from inferwatch.dashboards import build, lint, promql, variables
from inferwatch.exporters import measure, metrics_doc, registry
from inferwatch.load import LoadSpec, run_load
from inferwatch.simulators import catalog
from tests.conftest import ROOT
from tests.harness import procs
from tests.harness.exporter import ExporterProcess, inferwatch_command
from tests.harness.prometheus import Prometheus, pod_labels, scrape_job

FINISHED = "llm_requests_finished_total"
PROXY = f'{schema.SOURCE_LABEL}="{schema.PROXY_SOURCE}"'


def test_the_schema_declares_source_on_exactly_what_the_proxy_measures() -> None:
    measured = {c.family for c in measure.PROXY_CONCEPTS}
    assert measured == {f.name for f in schema.PROXY_FAMILIES}
    for concept in measure.PROXY_CONCEPTS:
        for source in concept.sources:
            assert source.set_labels[schema.SOURCE_LABEL] == schema.PROXY_SOURCE
    # The engine without /metrics is the one whose figures are all the proxy's.
    assert {registry.proxy_only(f.name) for f in schema.PROXY_FAMILIES} == {("ollama",)}
    assert registry.proxy_only("llm_requests_waiting") == ()


def test_dashboards_and_rules_read_each_family_through_the_same_selections() -> None:
    assert queries.sides("llm_requests_waiting") == ((),)
    assert [[m.render() for m in side] for side in queries.sides(FINISHED)] == [
        ['source!="proxy"'],
        ['source="proxy"', 'engine="ollama"'],
    ]
    for family in schema.FAMILIES:
        sample = family.sample_names[0]
        dashboards = promql.one_source(
            family.name, promql.Scope(('a="b"',)), (), lambda sel, s=sample: f"{s}{sel}"
        )
        rules = queries.one_source(sample, ['a="b"'])
        # Grafana's selectors are spaced for reading; the rules' are not.
        assert dashboards.replace(", ", ",").strip("()") == rules, family.name


def test_the_metrics_doc_states_the_label_and_the_decision() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert doc == metrics_doc.render()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{FINISHED}` |"))
    assert "(+ `rank`, `source`)" in row
    waiting = next(line for line in doc.splitlines() if "| `llm_requests_waiting` |" in line)
    assert "`source`" not in waiting
    assert '`source!="proxy"`' in doc and "Ollama: no /metrics at all" in doc


def test_lint_finds_a_measured_family_read_without_a_source_matcher() -> None:
    assert lint.source_problems(f'sum(rate({FINISHED}{{namespace="a"}}[5m]))') == [
        f"{FINISHED} is read without a `source` matcher"
    ]
    assert lint.source_problems("llm_requests_running") == [
        "llm_requests_running is read without a `source` matcher"
    ]
    # A matcher inside a label value is not one; a family the proxy does not measure needs none.
    assert lint.source_problems(f'{FINISHED}{{model="source!=x"}}') != []
    assert lint.source_problems('llm_requests_waiting{namespace="a"}') == []
    assert lint.source_problems(f'rate({FINISHED}_count{{source!="proxy"}}[5m])') == []
    dashboard = copy.deepcopy(build.build_all()["inferwatch-fleet"])
    target = next(p for p in variables.panels(dashboard) if p["title"] == "Request rate")
    target["targets"][0]["expr"] = target["targets"][0]["expr"].replace(
        f", {promql.ENGINE_SIDE}", ""
    )
    assert any("without a `source` matcher" in p for p in lint.problems(dashboard))


def test_every_dashboard_query_of_a_measured_family_picks_its_source() -> None:
    checked = 0
    for dashboard in build.build_all().values():
        for panel in variables.panels(dashboard):
            for target in panel["targets"]:
                assert lint.source_problems(target["expr"]) == [], target["expr"]
                checked += promql.ENGINE_SIDE in target["expr"]
    assert checked > 20


def _one_source(family: str, suffix: str = "") -> str:
    """What the dashboards read of `family` (its `_count` etc. with `suffix`), over every
    series."""
    return promql.one_source(family, promql.Scope(()), (), lambda sel: f"{family}{suffix}{sel}")


@pytest.mark.prometheus
def test_a_request_behind_a_proxy_counts_once_in_prometheus(tmp_path: Path) -> None:
    requests = 12
    started: list = []
    jobs = []
    try:
        for engine, name in (("vllm", "proxied-vllm"), ("ollama", "local-ollama")):
            workdir = tmp_path / name
            port = procs.free_port()
            url = f"http://127.0.0.1:{port}"
            sim = procs.start(
                [*inferwatch_command(), "simulate", "--engine", engine, "--profile", "none",
                 "--listen", f"127.0.0.1:{port}"],
                name=f"sim-{engine}", workdir=workdir, ready_url=f"{url}/health",
            )  # fmt: skip
            started.append(sim)
            # vLLM named explicitly: a proxy in front of an engine that has its own /metrics.
            engine_args = ["--engine", "vllm"] if engine == "vllm" else []
            sidecar = ExporterProcess(
                workdir, upstream=url, extra_args=["--proxy", *engine_args]
            ).start()
            started.append(sidecar)
            labels = pod_labels(namespace="src", pod=f"{name}-0", deployment=name)
            jobs.append(scrape_job(name, sidecar.address, labels))
            model = catalog.ENGINES[engine].default_model
            spec = LoadSpec(sidecar.url, concurrency=3, requests=requests, max_tokens=8,
                            stream=True, chat=True, model=model)  # fmt: skip
            assert run_load(spec).requests_ok == requests
        prom = Prometheus(tmp_path / "prometheus", scrape_configs=jobs).start()
        started.append(prom)
        prom.wait_targets_up()
        raw = f"sum by (deployment) ({FINISHED})"
        prom.wait_for(raw, lambda r: len(r) == 2 and all(s.value >= requests for s in r))
        # Without a source matcher, vLLM's requests count twice: its own and the proxy's.
        totals = {s.labels["deployment"]: s.value for s in prom.vector(raw)}
        assert totals == {"proxied-vllm": 2 * requests, "local-ollama": requests}
        # As the dashboards read it: vLLM's own count, Ollama's proxy count, once each.
        once = f"sum by (deployment) ({_one_source(FINISHED)})"
        totals = {s.labels["deployment"]: s.value for s in prom.vector(once)}
        assert totals == {"proxied-vllm": requests, "local-ollama": requests}
        measured = f"sum by (deployment, engine) ({FINISHED}{{{PROXY}}})"
        assert {s.labels["engine"] for s in prom.vector(measured)} == {"vllm", "ollama"}
        # The same for a histogram's count: each request's duration observed once.
        duration = _one_source("llm_request_duration_seconds", "_count")
        counts = f"sum by (deployment) ({duration})"
        totals = {s.labels["deployment"]: s.value for s in prom.vector(counts)}
        assert totals == {"proxied-vllm": requests, "local-ollama": requests}
    finally:
        for item in reversed(started):
            item.stop()
