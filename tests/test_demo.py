"""`inferwatch demo`: the fleet, its SLOs and rules, the SLO service, the reports after the
warm-up (advice, SLO status, dashboard previews), and nothing left behind.

The demo runs as the subprocess a user starts; its reports run as the real commands they are
(`inferwatch advise`, `inferwatch dashboards preview`, `inferwatch slo serve`), here also
against parts that are down.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml
from typer.testing import CliRunner

from inferwatch.cli import app
from inferwatch.dashboards import build as dashboards_build
from inferwatch.simulators import catalog, demo, demo_real, demo_reports, demo_slo
from inferwatch.slo import spec as slo_spec
from tests.conftest import require_tool
from tests.harness import promtool
from tests.harness.procs import free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ADVICE_HEAD = re.compile(
    r"^demo/(\w+) \((\w+), [^)]+\): (healthy|recommendations|needs-attention|insufficient-data)$"
)
FLEET_SLO_NAMES = [s.name for s in slo_spec.parse(demo_slo.FLEET_SLOS)]


# -- the pieces ----------------------------------------------------------------------------------


def test_demo_summary_counts_a_request_once() -> None:
    both = (
        'llm_requests_finished_total{engine="vllm",model="m",reason="stop"} 10\n'
        'llm_requests_finished_total{engine="vllm",model="m",reason="stop",source="proxy"} 10\n'
        'llm_requests_running{engine="vllm",model="m",source="proxy"} 3\n'
    )
    # An engine with /metrics behind a proxy: its own count; the proxy's only where it has none.
    assert demo.summarize(both) == {
        "llm_requests_finished_total": 10.0,
        "llm_requests_running": 3.0,
    }
    only = 'llm_requests_finished_total{engine="ollama",model="m",reason="stop",source="proxy"} 4\n'
    assert demo.summarize(only) == {"llm_requests_finished_total": 4.0}
    line = demo.summary_line(demo.FLEET[-1], demo.summarize(only), {}, 2.0)
    assert "done   2.0/s" in line and "run    -" in line and "kv    -" in line


@pytest.mark.parametrize(
    ("text", "fleet"),
    [(demo_slo.FLEET_SLOS, demo.FLEET), (demo_real.SLOS, (demo_real.DEPLOYMENT,))],
    ids=["simulated fleet", "real vLLM"],
)
def test_each_demo_slo_names_a_deployment_the_demo_runs_on_its_engine(text, fleet) -> None:
    specs = slo_spec.parse(text, "slos.yaml")
    engines = {d.name: d.engine for d in fleet}
    assert specs
    for spec in specs:
        assert spec.namespace == demo.NAMESPACE
        assert spec.deployment in engines, spec.name
        assert spec.engine in (None, engines[spec.deployment]), spec.name


def test_the_advised_deployments_are_in_the_fleet_and_one_is_overloaded_in_waves() -> None:
    by_name = {d.name: d for d in demo.FLEET}
    assert set(demo.ADVISED) <= set(by_name)
    assert [by_name[n].profile for n in demo.ADVISED].count("wave") == 1
    # The advisor reads /metrics: none of them may be an engine without it.
    assert not any(by_name[n].kind.needs_proxy for n in demo.ADVISED)


@pytest.mark.parametrize("text", [demo_slo.FLEET_SLOS, demo_real.SLOS], ids=["fleet", "real"])
def test_the_demo_writes_its_specs_and_rules_that_promtool_accepts(tmp_path, text) -> None:
    require_tool("promtool")
    specs = demo_slo.SloSpecs(text, tmp_path / "out", with_rules=True)
    asyncio.run(specs.start())
    assert specs.path.read_text() == text
    files = sorted(specs.rule_dir.iterdir())
    assert [f.name for f in files] == [
        "inferwatch-alerts.rules.yaml",
        "inferwatch-recording.rules.yaml",
        "inferwatch-slos.rules.yaml",
    ]
    promtool.check_rules(*files)
    # One SLO group per spec, reading the demo's series.
    groups = yaml.safe_load((specs.rule_dir / "inferwatch-slos.rules.yaml").read_text())["groups"]
    names = [s.name for s in slo_spec.parse(text)]
    assert [g["name"] for g in groups] == [f"inferwatch.slo.{n}" for n in names]
    assert f'namespace="{demo.NAMESPACE}"' in groups[0]["rules"][0]["expr"]


@pytest.mark.parametrize(
    ("due", "window", "interval"),
    [
        (90.0, 40.0, 5.0),
        (40.0, 40.0, 5.0),
        (20.0, 20.0, 5.0),
        (5.0, 5.0, 1.25),
        (1.0, 1.0, 0.25),
        (0.001, 1.0, 0.25),  # a tiny --duration: past its end, never below the advisor's units
    ],
)
def test_advice_samples_the_end_of_the_warmup_with_enough_pages(due, window, interval) -> None:
    assert demo_reports.sampling(due) == (window, interval)
    assert window / interval + 1 >= demo_reports.MIN_PAGES


def test_an_slo_status_line_says_good_ratio_budget_burn_and_what_would_fire() -> None:
    status = {
        "name": "chat-ttft",
        "deployment": "chat",
        "sli_value": 0.9376,
        "objective": 0.99,
        "budget_remaining": -5.24,
        "burn_rates": [
            {"window": "5m", "error_ratio": 0.238, "burn_rate": 23.8},
            {"window": "1h", "error_ratio": None, "burn_rate": None},
        ],
        "firing": ["critical", "warning"],
    }
    assert demo_slo.status_line(status) == (
        "  chat-ttft          chat    good  93.76%, objective 99%     budget left  -524%"
        "  burn 5m  23.8x  1h      -  would fire: critical, warning"
    )
    empty = {**status, "sli_value": None, "budget_remaining": None, "burn_rates": [], "firing": []}
    assert demo_slo.status_line(empty) == (
        "  chat-ttft          chat    good       -, objective 99%     budget left      -"
        "  burn 5m      -  1h      -"
    )


# -- reports against parts that are down ---------------------------------------------------------


def _dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


async def _report(component: demo.ReportTask, warmup: demo.Warmup) -> None:
    await component.start()
    warmup.begin()
    await component.settle()
    await component.stop()


def test_advice_for_an_engine_that_is_down_says_so(tmp_path, capsys) -> None:
    chat = demo.FLEET[0]
    specs = demo_slo.SloSpecs(demo_slo.FLEET_SLOS, tmp_path, with_rules=False)
    asyncio.run(specs.start())
    engines = demo.Simulators((chat,), demo.Ports(0))
    engines.urls[chat.name] = _dead_url()
    warmup = demo.Warmup(1.0)
    asyncio.run(_report(demo_reports.Advice(chat, engines, specs, warmup), warmup))
    err = capsys.readouterr().err
    assert "inferwatch demo: no advice for chat (1 s of its engine's /metrics; exit code 2)" in err
    assert f"cannot read {engines.urls[chat.name]}/metrics" in err
    assert "Traceback" not in err


def test_previews_from_a_prometheus_that_is_down_say_so(tmp_path, capsys) -> None:
    prom = demo.Prometheus("prometheus", [], demo.Ports(0), tmp_path)
    prom.url, prom.started = _dead_url(), time.monotonic() - 60
    warmup = demo.Warmup(0.1)
    asyncio.run(_report(demo_reports.Previews(prom, warmup, tmp_path / "out", tmp_path), warmup))
    err = capsys.readouterr().err
    assert "inferwatch demo: the dashboard previews failed (exit code 2)" in err
    assert f"cannot reach Prometheus at {prom.url}" in err
    assert not (tmp_path / "out" / "previews").exists()


def test_slo_status_from_a_service_that_is_down_or_refuses_says_so(tmp_path, capsys) -> None:
    specs = demo_slo.SloSpecs(demo_slo.FLEET_SLOS, tmp_path, with_rules=False)
    asyncio.run(specs.start())
    prom = demo.Prometheus("prometheus", [], demo.Ports(0), tmp_path)
    prom.url = _dead_url()
    service = demo_slo.SloService(prom, specs, demo.Ports(0), tmp_path)
    service.url = _dead_url()
    warmup = demo.Warmup(0.0)
    asyncio.run(_report(demo_slo.SloStatus(service, warmup), warmup))
    err = capsys.readouterr().err
    assert f"inferwatch demo: the SLO service did not answer {service.url}/v1/slos" in err

    # The real service, whose Prometheus is down: it answers 503 with the reason.
    async def refused() -> None:
        port = free_port()
        service.url = f"http://127.0.0.1:{port}"
        process = demo.Process(
            "SLO service",
            demo.inferwatch_argv(
                "slo", "serve", "--prometheus", prom.url, "--config", str(specs.path),
                "--listen", f"127.0.0.1:{port}", "--kubernetes", "off", "--timeout", "1",
            ),
            tmp_path / "slo.log",
        )  # fmt: skip
        await process.spawn()
        try:
            async with aiohttp.ClientSession() as session:
                await process.wait_ready(f"{service.url}/healthz", session)
            await _report(demo_slo.SloStatus(service, warmup), warmup)
        finally:
            await process.stop()

    asyncio.run(refused())
    err = capsys.readouterr().err
    assert f"inferwatch demo: the SLO service did not answer {service.url}/v1/slos: HTTP 503" in err
    assert "Traceback" not in err


# -- the demo as a user runs it ------------------------------------------------------------------


def _our_processes(tag: str) -> list[int]:
    """PIDs of live processes whose environment carries `tag`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if tag.encode() in env:
            pids.append(int(entry.name))
    return pids


def _command_lines(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return out


class Run:
    """`inferwatch demo` as a subprocess, tagged so every process it starts can be found, with
    its own TMPDIR so its temporary folder can be seen to go."""

    def __init__(
        self, tmp_path: Path, *args: str, out: Path | None = None, path: str | None = None
    ):
        self.tag = f"demo-{uuid.uuid4().hex}"
        self.out = out or tmp_path / "out"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {**os.environ, "INFERWATCH_TEST_TAG": self.tag, "TMPDIR": str(self.tmp)}
        if path is not None:
            env["PATH"] = path
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from inferwatch.cli import main; main()", "demo",
             "--out", str(self.out), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )  # fmt: skip
        self.lines: list[str] = []

    def read_announcement(self, timeout: float = 60) -> dict[str, str]:
        """The announced links, label -> URL or path, up to the line that says when the
        reports come."""
        assert self.proc.stdout is not None
        links: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("In "):
                break
            if line.startswith("  ") and "  " in line.strip():
                label, _, value = line.strip().rpartition("  ")
                links[label.strip()] = value.strip()
        return links

    def finish(self, timeout: float) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.elapsed = time.monotonic() - self.started
        return "".join(self.lines) + out, err

    def left_behind(self) -> list[int]:
        time.sleep(0.2)
        return _our_processes(self.tag)


def _query(prom: str, query: str) -> list[dict]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)["data"]["result"]


def _advice_blocks(out: str) -> dict[str, str]:
    """deployment -> the advice printed for it (up to the next line of the demo's own)."""
    blocks: dict[str, str] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^inferwatch demo: advice for demo/(\w+), from ", line)
        if m is None:
            continue
        body = []
        for following in lines[i + 1 :]:
            if following.startswith("inferwatch demo:") or re.match(r"^\d\d:\d\d:\d\d$", following):
                break
            body.append(following)
        blocks[m.group(1)] = "\n".join(body)
    return blocks


def test_demo_runs_for_its_duration_and_leaves_no_process_behind(tmp_path) -> None:
    run = Run(tmp_path, "--duration", "5", "--no-prometheus", "--summary-every", "2")
    out, err = run.finish(timeout=60)
    assert run.proc.returncode == 0, err
    assert "chat sidecar (normalized)" in out and "dcgm-exporter" in out
    assert not re.search(r"^  (Prometheus|SLO service)", out, re.M)
    # The live summary: every deployment, "-" for what an engine does not report.
    assert re.search(r"^  chat +vllm +run +\d+ +wait +\d+", out, re.M), out
    assert re.search(r"^  router +triton +run +- +wait +\d+", out, re.M), out
    # Ollama's figures are the proxy's: its load driver's first request starts at once.
    assert re.search(r"^  private +ollama +run +\d+ +wait +- ", out, re.M), out
    for d in demo.FLEET:
        assert f"{d.name} sidecar (normalized)" in out
    # Without Prometheus the advisor still samples the engines, at the end of the short run.
    assert f"In 5 s: advice for chat, advice for agents; kept in {run.out}" in out
    advice = _advice_blocks(out)
    assert sorted(advice) == ["agents", "chat"]
    for name, text in advice.items():
        head = ADVICE_HEAD.match(text.splitlines()[0])
        assert head is not None and head.group(1) == name, text
        assert (run.out / f"advice-{name}.txt").read_text().rstrip() == text
    # 5 s hold too few requests to judge, and the advice says so rather than guessing.
    assert "need at least 30 to judge latency" in advice["chat"]
    assert (run.out / "slos.yaml").read_text() == demo_slo.FLEET_SLOS
    assert not (run.out / "rules").exists() and not (run.out / "previews").exists()
    assert out.rstrip().endswith("inferwatch demo: stopped")
    assert run.elapsed < 5 + 30
    assert run.left_behind() == []
    assert list(run.tmp.iterdir()) == []


def test_without_prometheus_installed_the_demo_says_so_and_still_advises(tmp_path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = Run(tmp_path, "--duration", "2", "--summary-every", "60", path=str(empty))
    out, err = run.finish(timeout=60)
    assert run.proc.returncode == 0, err
    assert "inferwatch demo: no Prometheus: prometheus is not installed" in err
    assert not re.search(r"^  (Prometheus|SLO service|dashboard previews)", out, re.M)
    assert sorted(_advice_blocks(out)) == ["agents", "chat"]
    assert not (run.out / "rules").exists()
    assert run.left_behind() == []


def test_demo_with_prometheus_reports_after_its_duration_then_stops_clean(tmp_path) -> None:
    require_tool("prometheus")
    duration = 30
    run = Run(tmp_path, "--duration", str(duration), "--summary-every", "60")
    try:
        links = run.read_announcement()
        prom = links.get("Prometheus")
        service = links.get("SLO service: budgets, burn rates, recommendations")
        assert prom and service, "".join(run.lines) + (run.proc.stderr.read() or "")
        assert links["dashboard previews, after the warm-up"] == f"{run.out}/previews/"
        # The SLO service is up over that Prometheus.
        with urllib.request.urlopen(f"{service}readyz", timeout=5) as resp:
            assert json.load(resp) == {"status": "ready", "prometheus": prom}
        # Prometheus evaluates exactly the rule files in the output folder, the demo's SLOs
        # among them.
        with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=5) as resp:
            groups = json.load(resp)["data"]["groups"]
        assert {g["file"] for g in groups} == {str(p) for p in (run.out / "rules").iterdir()}
        # (the objective is a constant each SLO's group records from its first evaluation on)
        objectives = {s.name: s.objective for s in slo_spec.parse(demo_slo.FLEET_SLOS)}
        found: dict[str, float] = {}
        for _ in range(40):
            result = _query(prom, f'slo:objective:ratio{{namespace="{demo.NAMESPACE}"}}')
            found = {r["metric"]["slo"]: float(r["value"][1]) for r in result}
            if len(found) == len(objectives):
                break
            time.sleep(0.5)
        assert found == objectives
    finally:
        out, err = run.finish(timeout=duration + 120)
    assert run.proc.returncode == 0, err
    # The demo's own errors are one line each. The simulators' aiohttp server may log a
    # traceback for a streamed answer whose client went away as the demo stopped ("Cannot write
    # to closing transport", seen once in about ten runs): simulators/server.py re-raises the
    # ConnectionResetError, which aiohttp logs as an error.
    assert err.count("Traceback") == err.count("Error handling request"), err
    # The reports are due at the end of the run, which waits for them, then stops.
    reports = "SLO status, advice for chat, advice for agents, dashboard previews"
    assert f"In {duration} s: {reports}; kept in {run.out}" in out
    assert out.rstrip().endswith("inferwatch demo: stopped")
    assert run.elapsed < duration + 90
    # What the SLO service says of each SLO, in the specs' order.
    statuses = re.findall(
        r"^  ([\w-]+) +(\w+) +good +(\S+), objective (\S+) +budget left +(\S+)  burn 5m", out, re.M
    )
    assert [s[0] for s in statuses] == FLEET_SLO_NAMES, out
    # chat has had about 60 requests: its ratios are known.
    assert all(s[2].endswith("%") for s in statuses if s[1] == "chat"), out
    # The advice, printed and kept.
    advice = _advice_blocks(out)
    assert sorted(advice) == ["agents", "chat"]
    for name, text in advice.items():
        assert ADVICE_HEAD.match(text.splitlines()[0]), text
        assert (run.out / f"advice-{name}.txt").read_text().rstrip() == text
    # chat's SLOs are the advisor's objectives.
    assert "objective chat-ttft: ttft p99 <= 1 s" in advice["chat"]
    # The previews: every dashboard, a PNG each, listed.
    expected = [run.out / "previews" / f"{uid}.png" for uid in dashboards_build.BUILDERS]
    for path in expected:
        assert f"  {path}\n" in out
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000, path
    assert run.left_behind() == []
    assert list(run.tmp.iterdir()) == []


def test_a_signal_during_the_warmup_stops_everything_at_once(tmp_path) -> None:
    require_tool("prometheus")
    # A 30 s warm-up: the advisor starts sampling as soon as everything is up.
    run = Run(tmp_path, "--summary-every", "60", "--warmup", "30")
    try:
        links = run.read_announcement()
        prom = links.get("Prometheus")
        assert prom, "".join(run.lines) + (run.proc.stderr.read() or "")
        # Every engine states llm_engine_info; Triton once per model it serves.
        labels = "deployment, namespace, pod, engine"
        query = f"count by ({labels}) (max by ({labels}, model) (llm_engine_info))"
        fleet = {d.name: d.engine for d in demo.FLEET}
        found: dict[str, str] = {}
        result: list[dict] = []
        for _ in range(60):
            time.sleep(0.5)
            result = _query(prom, query)
            found = {r["metric"]["deployment"]: r["metric"]["engine"] for r in result}
            if len(found) == len(fleet):
                break
        assert found == fleet
        for r in result:
            assert r["metric"]["namespace"] == "demo"
            assert r["metric"]["pod"] == f"{r['metric']['deployment']}-0"
            models = (
                len(catalog.ENGINES["triton"].default_models)
                if r["metric"]["engine"] == "triton"
                else 1
            )
            assert r["value"][1] == str(models), r
        # Only Ollama's request figures come from a proxy, through which its driver sends.
        proxied = 'count by (deployment) (llm_requests_finished_total{source="proxy"})'
        for _ in range(60):
            if _query(prom, proxied):
                break
            time.sleep(0.5)
        assert [r["metric"]["deployment"] for r in _query(prom, proxied)] == ["private"]
        # The advisor is sampling the engines, as its own process.
        advising = [c for c in _command_lines(_our_processes(run.tag)) if " advise " in c]
        assert len(advising) == len(demo.ADVISED), advising
        stopping = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
    finally:
        out, err = run.finish(timeout=30)
    assert run.proc.returncode == 0, err
    assert time.monotonic() - stopping < 15
    assert out.rstrip().endswith("inferwatch demo: stopped")
    # Stopped before the reports were due: none printed, no previews.
    assert "advice for demo/chat" not in out and "SLOs of namespace" not in out
    assert not (run.out / "previews").exists()
    assert run.left_behind() == []
    assert list(run.tmp.iterdir()) == []


def test_an_output_folder_that_cannot_be_written_stops_the_demo_before_it_starts(
    tmp_path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = Run(tmp_path, "--duration", "5", "--no-prometheus", out=blocker / "sub")
    out, err = run.finish(timeout=60)
    assert run.proc.returncode == 1
    assert f"inferwatch demo: cannot write the demo's files into {blocker / 'sub'}" in err
    assert "--out chooses another folder" in err
    assert "Traceback" not in err
    assert "sidecar" not in out  # nothing was started
    assert run.left_behind() == []
    assert list(run.tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--warmup", "0"], "--warmup must be positive"),
        (["demo", "--duration", "-1"], "--duration must be positive"),
        (["demo", "--out", "{file}"], "not a folder"),
    ],
)
def test_demo_refuses_bad_options_with_a_clear_message(tmp_path, args, message) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = [a.replace("{file}", str(blocker)) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
