"""Every query of every dashboard, run through a real Prometheus: it parses and returns data.

One Prometheus (Debian's, started by the harness) scrapes, with the labels our PodMonitor
sets, the real `inferwatch exporter` in front of each engine simulator (every engine that has
one: `inferwatch.simulators.catalog.ENGINES`) and a dcgm-exporter simulator for that pod's
GPUs; it evaluates the committed recording, alert and SLO rules (`alerts/generated/rules/`).
The deployments are those of the example SLO specs, so the SLO rules have data to read.

Then, for each engine and each dashboard, the variables are chosen as a user looking at that
engine would choose them, substituted with Grafana's escaping, and every panel's queries are
sent to Prometheus' query API. A query must return data, unless its panel says the engine does
not report what it reads; then it must return nothing (the note is true both ways).
"""

from __future__ import annotations

import copy
import math
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inferwatch.alerts import build as alerts_build
from inferwatch.cli import app
from inferwatch.dashboards import build, coverage, variables
from inferwatch.dashboards.preview import render_previews
from inferwatch.simulators import catalog
from inferwatch.slo import spec as slo_spec
from tests.conftest import ROOT
from tests.harness import procs
from tests.harness.exporter import ExporterProcess, inferwatch_command
from tests.harness.prometheus import Prometheus, PrometheusError, pod_labels, scrape_job

pytestmark = pytest.mark.prometheus

RULES = sorted((ROOT / "alerts" / "generated" / "rules").glob("*.rules.yaml"))
SIMULATED = tuple(catalog.ENGINES)
# Long enough for the rates of every panel and for preemptions under overload.
COLLECT_SECONDS = 40.0
STEP = "2s"
BUILTINS = {"__rate_interval": "10s", "__interval": STEP}
TPOT = "llm_time_per_output_token_seconds"


@dataclass(frozen=True)
class Deployment:
    """One simulated deployment; an example SLO that names its engine gives its place."""

    engine: str
    namespace: str
    deployment: str
    model: str
    has_slo: bool

    @property
    def pod(self) -> str:
        return f"{self.deployment}-0"


def _deployments() -> list[Deployment]:
    specs = slo_spec.load_all([alerts_build.EXAMPLE_SLOS])
    out = []
    for engine in SIMULATED:
        spec = next((s for s in specs if s.engine == engine), None)
        if spec is None:
            # No SLO example for this engine: no SLO series of its own, in a namespace that
            # has some (the fleet overview shows a namespace's SLOs).
            default = catalog.ENGINES[engine].default_model
            namespace = specs[0].namespace
            out.append(Deployment(engine, namespace, f"{engine}-sim", default, has_slo=False))
            continue
        model = spec.models[0] if spec.models else catalog.ENGINES[engine].default_model
        out.append(Deployment(engine, spec.namespace, spec.deployment, model, has_slo=True))
    return out


DEPLOYMENTS = _deployments()


@dataclass
class Fleet:
    prom: Prometheus
    deployments: list[Deployment]
    start: float
    end: float


def _simulator(workdir: Path, name: str, *args: str) -> tuple[procs.Proc, str]:
    """`inferwatch simulate ARGS` on a free port: the process and its base URL."""
    url = ""

    def launch(port: int) -> procs.Proc:
        nonlocal url
        url = f"http://127.0.0.1:{port}"
        return procs.start(
            [*inferwatch_command(), "simulate", "--listen", f"127.0.0.1:{port}", *args],
            name=f"{name}-{port}",
            workdir=workdir,
            ready_url=f"{url}/health",
        )

    return procs.on_free_port(launch), url


def _load_through(workdir: Path, url: str, model: str) -> procs.Proc:
    """`inferwatch load` streaming requests through a proxying sidecar, for the fleet's life."""
    return procs.start(
        [*inferwatch_command(), "load", "--target", url, "--model", model, "--rate", "2",
         "--duration", "10m", "--stream", "--chat", "--max-tokens", "48"],
        name="load",
        workdir=workdir,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    started: list[Any] = []
    prom = None
    try:
        jobs = []
        for i, d in enumerate(DEPLOYMENTS):
            workdir = Path(tmp_path_factory.mktemp(f"sim-{d.engine}"))
            kind = catalog.ENGINES[d.engine]
            # Overload: a queue, a full KV cache and preemptions, so every panel has something.
            # An engine without /metrics (Ollama) sees only what passes through its proxy.
            profile = "none" if kind.needs_proxy else "overload"
            # Engines with data parallelism run two ranks; Triton its default two models.
            ranks = ["--data-parallel", "2"] if d.engine in ("vllm", "sglang") else []
            models = ["--model", d.model] if d.has_slo else []
            engine, engine_url = _simulator(
                workdir, d.engine, "--engine", d.engine, *models,
                "--profile", profile, "--seed", str(i), *ranks,
            )  # fmt: skip
            gpus = str(len(kind.default_models) if kind.engine_per_model else 2 if ranks else 1)
            dcgm, dcgm_url = _simulator(
                workdir, f"dcgm-{d.engine}", "--engine", "dcgm", "--gpus", gpus,
                "--pod", d.pod, "--namespace", d.namespace, "--profile", "overload",
            )  # fmt: skip
            exporter = ExporterProcess(
                workdir,
                upstream=engine_url,
                dcgm=dcgm_url,
                timeout=5.0,
                env={"POD_NAME": d.pod, "POD_NAMESPACE": d.namespace},
                extra_args=["--proxy"] if kind.needs_proxy else [],
            ).start()
            started += [engine, dcgm, exporter]
            if kind.needs_proxy:
                started.append(_load_through(workdir, exporter.url, d.model))
            labels = pod_labels(namespace=d.namespace, pod=d.pod, deployment=d.deployment)
            jobs.append(scrape_job(f"inferwatch-{d.engine}", exporter.address, labels))
        prom = Prometheus(
            Path(tmp_path_factory.mktemp("prometheus")), scrape_configs=jobs, rule_files=RULES
        ).start()
        prom.wait_targets_up(timeout=60)
        start = time.time()
        # Every engine that counts finished requests has some before the window counts.
        counting = [d for d in DEPLOYMENTS if _reports(d.engine, "llm_requests_finished_total")]
        prom.wait_for(
            "count(sum by (engine) (rate(llm_requests_finished_total[10s])) > 0)",
            lambda r: bool(r) and r[0].value == len(counting),
            timeout=60,
        )
        time.sleep(max(0.0, COLLECT_SECONDS - (time.time() - start)))
        yield Fleet(prom, DEPLOYMENTS, start, time.time())
    finally:
        if prom is not None:
            prom.stop()
        for item in reversed(started):
            item.stop()


def _reports(engine: str, family: str) -> bool:
    titles = {coverage.engine_name(t) for t in coverage.unreported(frozenset({family}))}
    return engine not in titles


def _label_values(prom: Prometheus, start: float, end: float) -> variables.LabelValues:
    def values(selector: str, label: str) -> list[str]:
        return sorted({s[label] for s in prom.series(selector, start, end) if label in s})

    return values


def _choose_for(d: Deployment) -> variables.Chooser:
    """What a user looking at deployment `d` picks: its namespace, deployment and engine."""
    wanted = {"namespace": d.namespace, "deployment": d.deployment, "engine": d.engine}

    def choose(variable: variables.Variable, options: list[str]) -> Sequence[str]:
        if variable.name in wanted:
            return [wanted[variable.name]]
        return variables.choose_all_or_first(variable, options)

    return choose


def _has_data(result: Any) -> bool:
    """At least one sample with a number (NaN is what Grafana draws as nothing)."""
    if not isinstance(result, list):
        return not math.isnan(result)
    points = [
        v for item in result for v in (item.values if hasattr(item, "values") else [item.value])
    ]
    return any(not math.isnan(v) for v in points)


def _run_dashboard(
    fleet: Fleet, dashboard: dict[str, Any], choose: variables.Chooser, engine: str | None
) -> tuple[list[str], int]:
    """Problems found running every query of `dashboard`, and how many queries ran."""
    prom, start, end = fleet.prom, fleet.start, fleet.end
    uid = dashboard["uid"]
    chosen = variables.resolve(dashboard, _label_values(prom, start, end), choose)
    found = variables.query_variables(dashboard)
    builtins = {**BUILTINS, "__range": f"{round(end - start)}s"}
    problems, ran = [], 0
    for panel in variables.panels(dashboard):
        unreported = coverage.reported_in(panel["description"])
        for target in panel["targets"]:
            expr = variables.substitute(target["expr"], found, chosen, builtins)
            where = f"{uid} / {panel['title']} / {target['refId']}: {expr}"
            try:
                if target.get("instant"):
                    result = prom.query(expr, at=end)
                else:
                    result = prom.query_range(expr, start, end, STEP)
            except PrometheusError as exc:
                problems.append(f"{where}\n    refused: {exc}")
                continue
            ran += 1
            lacking = {
                n for t, names in unreported.items() if coverage.engine_name(t) == engine
                for n in names
            }  # fmt: skip
            marked = bool(lacking & coverage.families_in(target["expr"]))
            if marked and _has_data(result):
                problems.append(f"{where}\n    returned data, but the panel says {engine} "
                                "does not report it")  # fmt: skip
            elif not marked and not _has_data(result):
                problems.append(f"{where}\n    returned no data")
    return problems, ran


# The SLO dashboard reads SLO series only: each deployment an example SLO covers.
CASES = [
    pytest.param(uid, d, id=f"{uid}-{d.engine}")
    for uid in build.BUILDERS
    for d in DEPLOYMENTS
    if uid != "inferwatch-slo" or d.has_slo
]


@pytest.mark.parametrize(("uid", "deployment"), CASES)
def test_every_query_returns_data(fleet: Fleet, uid: str, deployment: Deployment) -> None:
    dashboard = build.build_all()[uid]
    problems, ran = _run_dashboard(fleet, dashboard, _choose_for(deployment), deployment.engine)
    assert not problems, "\n".join(problems)
    assert ran >= 3


def test_fleet_overview_of_every_engine_together(fleet: Fleet) -> None:
    """Everything selected ("All"): the view a user gets on first load."""
    dashboard = build.build_all()["inferwatch-fleet"]
    problems, ran = _run_dashboard(fleet, dashboard, variables.choose_all_or_first, engine=None)
    assert not problems, "\n".join(problems)
    assert ran >= 20


def _deployment(engine: str) -> Deployment:
    return next(d for d in DEPLOYMENTS if d.engine == engine)


def _panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in variables.panels(dashboard) if p["title"] == title)


def test_the_check_finds_a_query_without_data(fleet: Fleet) -> None:
    dashboard = copy.deepcopy(build.build_all()["inferwatch-deployment"])
    target = _panel(dashboard, "Requests running and waiting")["targets"][0]
    target["expr"] = target["expr"].replace("llm_requests_running{", 'llm_requests_running{x="y", ')
    problems, _ = _run_dashboard(fleet, dashboard, _choose_for(_deployment("vllm")), "vllm")
    assert len(problems) == 1 and "returned no data" in problems[0]


def test_the_check_finds_a_missing_note(fleet: Fleet) -> None:
    """Without its note, TGI's empty TTFT panel is a failure, not an expected gap."""
    dashboard = copy.deepcopy(build.build_all()["inferwatch-deployment"])
    panel = _panel(dashboard, "Time to first token: p50, p90, p99")
    panel["description"] = panel["description"].split("\n\n")[0]
    problems, _ = _run_dashboard(fleet, dashboard, _choose_for(_deployment("tgi")), "tgi")
    assert len(problems) == 3 and all("returned no data" in p for p in problems)


def test_the_check_finds_a_false_note(fleet: Fleet) -> None:
    dashboard = copy.deepcopy(build.build_all()["inferwatch-deployment"])
    panel = _panel(dashboard, "Requests running and waiting")
    panel["description"] += "\n\nNot reported by vLLM: `llm_requests_running`."
    problems, _ = _run_dashboard(fleet, dashboard, _choose_for(_deployment("vllm")), "vllm")
    assert len(problems) == 1 and "returned data, but the panel says vllm" in problems[0]


def test_the_check_finds_a_query_prometheus_refuses(fleet: Fleet) -> None:
    dashboard = copy.deepcopy(build.build_all()["inferwatch-gpu"])
    _panel(dashboard, "Power")["targets"][0]["expr"] += " by (pod)"
    problems, _ = _run_dashboard(fleet, dashboard, _choose_for(_deployment("vllm")), "vllm")
    assert len(problems) == 1 and "refused" in problems[0] and "parse error" in problems[0]


def test_quantiles_never_mix_engines(fleet: Fleet) -> None:
    """The fleet's p95 TTFT has one series per engine and deployment, none summed across."""
    dashboard = build.build_all()["inferwatch-fleet"]
    panel = next(p for p in dashboard["panels"] if p["title"] == "Time per output token, p95")
    chosen = {"namespace": variables.ALL, "engine": variables.ALL}
    expr = variables.substitute(
        panel["targets"][0]["expr"], variables.query_variables(dashboard), chosen, BUILTINS
    )
    series = fleet.prom.vector(expr, at=fleet.end)
    reporting = [d.engine for d in DEPLOYMENTS if _reports(d.engine, TPOT)]
    assert len(reporting) >= 2
    assert sorted(s.labels["engine"] for s in series) == sorted(reporting)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_previews_render_every_dashboard(fleet: Fleet, tmp_path: Path) -> None:
    paths = render_previews(fleet.prom.url, tmp_path, range_seconds=fleet.end - fleet.start)
    assert [p.name for p in paths] == [f"{uid}.png" for uid in build.BUILDERS]
    for path in paths:
        width, height = _png_size(path)
        assert width == 1600 and height > 600
        assert path.stat().st_size > 50_000  # drawn panels, not an empty frame


def test_preview_command_writes_the_pngs(fleet: Fleet, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["dashboards", "preview", "--prometheus", fleet.prom.url, "--out", str(tmp_path),
         "--range", "1m"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{uid}.png" for uid in build.BUILDERS
    )
