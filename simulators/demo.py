"""`inferwatch demo`: a small local fleet, everything on loopback, stopped on Ctrl-C/SIGTERM.

The demo is a list of components started in order and stopped in reverse:

1. the demo's SLO specs (`demo_slo.py`), written to the output folder with the rules
   `inferwatch alerts build` generates from them;
2. the simulators, in this process: one deployment per kind of engine (vLLM twice, one of
   them with two data-parallel engine cores; TGI; SGLang; TensorRT-LLM on Triton; Triton
   serving two models; llama.cpp; Ollama), and a dcgm-exporter for a node whose GPUs carry
   their load;
3. one `inferwatch exporter` sidecar per deployment, each a subprocess as in a pod, told its
   pod and namespace so it keeps only its own GPUs from dcgm-exporter. Ollama has no /metrics:
   its sidecar runs in proxy mode, and a load driver streams requests through that proxy, since
   the proxy measures only what it forwards;
4. a Prometheus (Debian's `prometheus`, when installed) scraping the sidecars with the
   `namespace`/`pod`/`deployment` labels our PodMonitor gives them, on temporary storage,
   evaluating the generated recording rules, alerts and the demo's SLO rules;
5. the SLO service (`inferwatch slo serve`) over that Prometheus and the demo's SLOs;
6. after the warm-up (`Warmup`; sooner when `--duration` is shorter), the reports: the advice
   for a deployment or two (`inferwatch advise --upstream`, which needs no Prometheus), what the
   SLO service says of each SLO, and PNG previews of the dashboards (`demo_reports.py`);
7. a live summary read from the sidecars' normalized metrics.

With `--real-vllm`, a real vLLM and a load in waves take the simulators' place (demo_real.py).
What the demo writes for the user to keep (specs, rules, advice, previews) goes to one output
folder it announces; everything else lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiohttp
import typer
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from inferwatch import schema
from inferwatch.simulators import catalog, dcgm, model, server

if TYPE_CHECKING:
    from inferwatch.simulators.demo_real import RealVllm

NAMESPACE = "demo"
HOST = "127.0.0.1"
STOP_TIMEOUT = 5.0
READY_TIMEOUT = 20.0
WARMUP = 90.0  # seconds: chat's wave profile runs 60 s normal, then 30 s overloaded
OUT = Path("inferwatch-demo")
# Seconds the end of a --duration run waits for reports still running (advice, previews).
SETTLE_TIMEOUT = 180.0


@dataclass(frozen=True)
class Deployment:
    name: str
    engine: str
    # The served model; None: the engine kind's default model(s) (Triton serves two).
    model: str | None
    # Synthetic arrivals (`model.PROFILES`), or "none" for only the requests sent over HTTP.
    profile: str
    ranks: int = 1
    seed: int = 0
    # Requests per second a load driver streams through the sidecar (proxy mode only).
    driven: float = 0.0

    @property
    def pod(self) -> str:
        return f"{self.name}-0"

    @property
    def kind(self) -> catalog.EngineKind:
        return catalog.engine_kind(self.engine)


FLEET = (
    Deployment("chat", "vllm", "meta-llama/Llama-3.1-8B-Instruct", "wave", seed=1),
    Deployment("batch", "vllm", "Qwen/Qwen2.5-7B-Instruct", "normal", ranks=2, seed=2),
    Deployment("assist", "tgi", "mistralai/Mistral-7B-Instruct-v0.3", "light", seed=3),
    Deployment("agents", "sglang", "Qwen/Qwen2.5-7B-Instruct", "normal", seed=4),
    Deployment("search", "trtllm", None, "normal", seed=5),
    Deployment("router", "triton", None, "light", seed=6),
    Deployment("edge", "llamacpp", None, "light", seed=7),
    Deployment("private", "ollama", None, "none", seed=8, driven=1.0),
)
GPU_MODEL = "l4"
SPARE_GPUS = 1  # an unassigned GPU, which every sidecar must leave out
# The load driver's requests: short streamed chats, in chunks of this many seconds (a chunk
# waits for its last requests, so its results never pile up).
DRIVEN_MAX_TOKENS = 64
DRIVEN_PROMPT_TOKENS = 200
DRIVEN_CHUNK_SECONDS = 60.0


@dataclass
class Options:
    duration: float | None = None
    prometheus: bool = True
    base_port: int = 0
    summary_every: float = 5.0
    fleet: tuple[Deployment, ...] = FLEET
    real_vllm: bool = False  # a real vLLM and a load in waves instead of the simulators
    warmup: float = WARMUP  # seconds from the start to the reports
    out: Path = OUT  # what the demo writes for the user to keep


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def links(self) -> list[tuple[str, str]]: ...


class Warmup:
    """When the reports are due: `seconds` after everything has started (`begin()`).

    A report that needs a stretch of history before it (the advisor's sampling window) waits
    for `due - before`.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = math.inf
        self._ready = asyncio.Event()

    def begin(self) -> None:
        self.started = time.monotonic()
        self._ready.set()

    async def until_due(self, before: float = 0.0) -> None:
        await self._ready.wait()
        await asyncio.sleep(max(0.0, self.started + self.seconds - before - time.monotonic()))


class ReportTask(ABC):
    """A component that reports once, after the warm-up: `report()` runs as a task from
    `start()`; `settle()` returns when it has printed (or failed and said why); `stop()`
    cancels it."""

    _task: asyncio.Task | None = None

    @abstractmethod
    async def report(self) -> None:
        """Wait for the warm-up, then print the report."""

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self.report())

    async def settle(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StartError(Exception):
    """A component could not start; the message says which and why."""


class Ports:
    """Consecutive ports from a base, or free ones the kernel picks."""

    def __init__(self, base: int):
        self.next = base

    def take(self) -> int:
        if self.next == 0:
            with socket.socket() as s:
                s.bind((HOST, 0))
                return s.getsockname()[1]
        port, self.next = self.next, self.next + 1
        return port


# -- 1. the simulators -------------------------------------------------------------------------


@dataclass
class Simulators:
    """Every engine simulator and the node's dcgm-exporter, served from this process."""

    fleet: tuple[Deployment, ...]
    ports: Ports
    name: str = "simulators"
    engines: dict[str, catalog.EngineSimulator] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    dcgm_url: str = ""
    _runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self) -> None:
        built = {
            d.name: catalog.build(
                d.engine,
                model=d.model,
                load=None if d.profile == "none" else model.profile(d.profile),
                ranks=d.ranks,
                seed=d.seed,
            )
            for d in self.fleet
        }
        engines = sum(len(es.sim.engines) for es in built.values())
        gpus = dcgm.make_gpus(engines + SPARE_GPUS, dcgm.gpu_spec(GPU_MODEL), "sim-node-0")
        free = iter(gpus)
        clock: model.Realtime | None = None
        for d in self.fleet:
            es = self.engines[d.name] = built[d.name]
            for engine in es.sim.engines:
                gpu = next(free)
                gpu.engine, gpu.pod, gpu.namespace, gpu.container = (
                    engine,
                    d.pod,
                    NAMESPACE,
                    d.engine,
                )
            srv = server.EngineServer(es)
            clock = clock or srv.clock
            self.urls[d.name] = await self._serve(srv.app(), f"{d.name} ({d.engine})")
        assert clock is not None
        writer = dcgm.DcgmWriter(gpus, clock.now)
        self.dcgm_url = await self._serve(server.DcgmServer(writer).app(), "dcgm-exporter")

    async def _serve(self, app: web.Application, what: str) -> str:
        port = self.ports.take()
        try:
            runner, bound = await server.start_site(app, HOST, port)
        except OSError as exc:
            raise StartError(
                f"{what} simulator cannot listen on {HOST}:{port}: {exc.strerror or exc}"
            ) from None
        self._runners.append(runner)
        return f"http://{HOST}:{bound}"

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def links(self) -> list[tuple[str, str]]:
        out = []
        for name, url in self.urls.items():
            kind = self.engines[name].kind
            # An engine without /metrics (Ollama) shows what its sidecar polls instead.
            path = "/api/ps" if kind.needs_proxy else "/metrics"
            out.append((f"{name} engine ({kind.title})", url + path))
        out.append(("dcgm-exporter", f"{self.dcgm_url}/metrics"))
        return out


# -- 2. the sidecars ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if the demo itself is killed, so nothing is left running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """A child process with its output in a log file, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def spawn(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def wait_ready(
        self, url: str, session: aiohttp.ClientSession, timeout: float = READY_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise StartError(
                    f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise StartError(f"{self.name} was not ready at {url} after {timeout:.0f}s:\n{self.tail()}")

    async def wait(self) -> int:
        """The exit code, once the process has ended by itself."""
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def inferwatch_argv(*args: str) -> list[str]:
    """Run the `inferwatch` CLI of this very installation, whatever PATH says."""
    return [sys.executable, "-c", "from inferwatch.cli import main; main()", *args]


@dataclass
class Sidecar:
    deployment: Deployment
    sims: Simulators | RealVllm
    ports: Ports
    workdir: Path
    name: str = ""
    url: str = ""
    process: Process | None = None

    def __post_init__(self) -> None:
        self.name = f"sidecar of {self.deployment.name}"

    async def start(self) -> None:
        port = self.ports.take()
        self.url = f"http://{HOST}:{port}"
        d = self.deployment
        # An engine without /metrics is measured from the requests its sidecar forwards.
        proxy = ["--proxy"] if d.kind.needs_proxy else []
        self.process = Process(
            self.name,
            inferwatch_argv(
                "exporter",
                "--upstream",
                self.sims.urls[d.name],
                *(["--dcgm", self.sims.dcgm_url] if self.sims.dcgm_url else []),
                "--listen",
                f"{HOST}:{port}",
                "--log-level",
                "warning",
                *proxy,
            ),
            self.workdir / f"sidecar-{d.name}.log",
            {"POD_NAME": d.pod, "POD_NAMESPACE": NAMESPACE},
        )
        await self.process.spawn()
        async with aiohttp.ClientSession() as session:
            await self.process.wait_ready(f"{self.url}/healthz", session)

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    def links(self) -> list[tuple[str, str]]:
        out = [(f"{self.deployment.name} sidecar (normalized)", f"{self.url}/metrics")]
        if self.deployment.kind.needs_proxy:
            # Ollama's own API (/api/generate, /api/chat) and its OpenAI one (/v1/...).
            out.append((f"{self.deployment.name} API, through the proxy", self.url))
        return out


@dataclass
class Sidecars:
    """Every deployment's sidecar, started side by side: each is a Python process that takes
    a second or so to import and bind, and the fleet has one per engine."""

    members: list[Sidecar]
    name: str = "sidecars"

    async def start(self) -> None:
        results = await asyncio.gather(*(s.start() for s in self.members), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.members))

    def links(self) -> list[tuple[str, str]]:
        return [link for s in self.members for link in s.links()]


@dataclass
class LoadDriver:
    """Streams chat requests through a proxying sidecar at a steady Poisson rate, for as long
    as the demo runs: an engine without /metrics shows request figures only for traffic its
    proxy forwards, and the simulator's synthetic arrivals never pass through HTTP."""

    sidecar: Sidecar
    model: str
    rate: float
    name: str = ""
    _task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.name = f"load driver of {self.sidecar.deployment.name}"

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        from inferwatch.load import LoadError, LoadSpec
        from inferwatch.load.runner import run_load_async

        chunk = 0
        while True:
            spec = LoadSpec(
                self.sidecar.url,
                rate=self.rate,
                duration=DRIVEN_CHUNK_SECONDS,
                prompt_tokens=DRIVEN_PROMPT_TOKENS,
                max_tokens=DRIVEN_MAX_TOKENS,
                stream=True,
                chat=True,
                model=self.model,
                seed=chunk,
            )
            try:
                await run_load_async(spec)
            except LoadError as exc:  # the sidecar went away: say so, try again shortly
                typer.echo(f"inferwatch demo: {self.name}: {exc}", err=True)
                await asyncio.sleep(DRIVEN_CHUNK_SECONDS / 10)
            chunk += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def links(self) -> list[tuple[str, str]]:
        return [
            (
                f"{self.name}",
                f"{self.rate:g} streamed chat/s of {DRIVEN_MAX_TOKENS} tokens to {self.model}",
            )
        ]


# -- 3. Prometheus -----------------------------------------------------------------------------


def prometheus_config(sidecars: list[Sidecar], rule_files: list[Path]) -> dict:
    """Static targets with the labels our PodMonitor relabels in (JSON is valid YAML)."""
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "inferwatch",
                "static_configs": [
                    {
                        "targets": [s.url.removeprefix("http://")],
                        "labels": {
                            "namespace": NAMESPACE,
                            "pod": s.deployment.pod,
                            "deployment": s.deployment.name,
                            "container": "inferwatch",
                        },
                    }
                    for s in sidecars
                ],
            }
        ],
    }


@dataclass
class Prometheus:
    binary: str
    sidecars: list[Sidecar]
    ports: Ports
    workdir: Path
    # The rule files to evaluate: every `*.rules.yaml` there when Prometheus starts.
    rule_dir: Path | None = None
    name: str = "prometheus"
    url: str = ""
    process: Process | None = None
    started: float = math.inf  # time.monotonic() when it was ready

    async def start(self) -> None:
        port = self.ports.take()
        self.url = f"http://{HOST}:{port}"
        config = self.workdir / "prometheus.yml"
        rules = sorted(self.rule_dir.glob("*.rules.yaml")) if self.rule_dir else []
        config.write_text(json.dumps(prometheus_config(self.sidecars, rules), indent=2))
        self.process = Process(
            "prometheus",
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address={HOST}:{port}",
                "--log.level=warn",
            ],
            self.workdir / "prometheus.log",
        )
        await self.process.spawn()
        async with aiohttp.ClientSession() as session:
            await self.process.wait_ready(f"{self.url}/-/ready", session)
        self.started = time.monotonic()

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    def links(self) -> list[tuple[str, str]]:
        query = (
            "histogram_quantile(0.9, sum by (le, deployment) "
            "(rate(llm_time_to_first_token_seconds_bucket[1m])))"
        )
        return [
            ("Prometheus", self.url),
            ("  e.g. TTFT p90", f"{self.url}/graph?g0.expr=" + query.replace(" ", "%20")),
        ]


# -- 4. the live summary -----------------------------------------------------------------------


# Figures summed over a page's series; the proxy mode measures all of them but the queue.
_SUMMED = frozenset(
    (
        "llm_requests_running",
        "llm_requests_waiting",
        "llm_requests_finished_total",
        "llm_generation_tokens_total",
        "llm_time_to_first_token_seconds_sum",
        "llm_time_to_first_token_seconds_count",
        "llm_request_duration_seconds_sum",
        "llm_request_duration_seconds_count",
    )
)


def summarize(text: str) -> dict[str, float]:
    """Totals of the figures the summary shows, from a sidecar's normalized page.

    As in the dashboards, a request counts once: the engine's own series of a figure, or the
    proxy's (`source="proxy"`) where the page has none of the engine's (Ollama).
    """
    own: dict[str, float] = {}
    proxied: dict[str, float] = {}
    out: dict[str, float] = {}
    gpu: list[float] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in _SUMMED:
                measured = s.labels.get(schema.SOURCE_LABEL) == schema.PROXY_SOURCE
                totals = proxied if measured else own
                totals[s.name] = totals.get(s.name, 0.0) + s.value
            elif s.name == "llm_kv_cache_usage_ratio":
                out[s.name] = max(out.get(s.name, 0.0), s.value)
            elif s.name == "llm_gpu_utilization_ratio":
                gpu.append(s.value)
    out.update(proxied)
    out.update(own)
    if gpu:
        out["gpu"] = sum(gpu) / len(gpu)
    return out


def _rate(
    now: dict[str, float], before: dict[str, float], name: str, seconds: float
) -> float | None:
    """Per second over the interval; None when the engine does not report the counter."""
    if name not in now:
        return None
    return max(0.0, now[name] - before.get(name, 0.0)) / seconds


def _mean(now: dict[str, float], before: dict[str, float], base: str) -> float | None:
    count = now.get(f"{base}_count", 0.0) - before.get(f"{base}_count", 0.0)
    if count <= 0:
        return None
    return (now.get(f"{base}_sum", 0.0) - before.get(f"{base}_sum", 0.0)) / count


def summary_line(
    d: Deployment, now: dict[str, float], before: dict[str, float], seconds: float
) -> str:
    ttft = _mean(now, before, "llm_time_to_first_token_seconds")
    e2e = _mean(now, before, "llm_request_duration_seconds")
    kv = now.get("llm_kv_cache_usage_ratio")
    gpu = now.get("gpu")

    def opt(value: float | None, fmt: str, width: int) -> str:
        return ("-" if value is None else format(value, fmt)).rjust(width)

    running = now.get("llm_requests_running")
    waiting = now.get("llm_requests_waiting")
    done = _rate(now, before, "llm_requests_finished_total", seconds)
    tokens = _rate(now, before, "llm_generation_tokens_total", seconds)
    # Seconds for ttft and e2e (means over the interval), per second for the rates; "-" for
    # what the engine does not report.
    return (
        f"  {d.name:<8} {d.engine:<8} run {opt(running, '.0f', 4)}  wait {opt(waiting, '.0f', 4)}"
        f"  kv {opt(kv, '.0%', 4)}  done {opt(done, '.1f', 5)}/s  tok {opt(tokens, '.0f', 6)}/s"
        f"  ttft {opt(ttft, '.2f', 6)}  e2e {opt(e2e, '.2f', 6)}  gpu {opt(gpu, '.0%', 4)}"
    )


@dataclass
class Summary:
    sidecars: list[Sidecar]
    every: float
    name: str = "summary"
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _scrape(self, session: aiohttp.ClientSession) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for s in self.sidecars:
            try:
                async with session.get(
                    f"{s.url}/metrics", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    out[s.deployment.name] = summarize(await resp.text())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                out[s.deployment.name] = {}
        return out

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            before = await self._scrape(session)
            last = time.monotonic()
            while True:
                await asyncio.sleep(self.every)
                now = await self._scrape(session)
                seconds = max(time.monotonic() - last, 1e-3)
                last = time.monotonic()
                typer.echo(time.strftime("%H:%M:%S"))
                for s in self.sidecars:
                    name = s.deployment.name
                    typer.echo(summary_line(s.deployment, now[name], before.get(name, {}), seconds))
                before = now

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def links(self) -> list[tuple[str, str]]:
        return []


# -- the demo ----------------------------------------------------------------------------------


# The deployments whose advice the demo prints: the one whose load comes in waves (overloaded
# at the end of the warm-up) and a steady one beside it.
ADVISED = ("chat", "agents")


def _missing(*modules: str) -> str | None:
    """The first of `modules` that cannot be imported (an extra not installed), else None."""
    return next((m for m in modules if importlib.util.find_spec(m) is None), None)


def _skip(what: str, reason: str) -> None:
    typer.echo(f"inferwatch demo: no {what}: {reason}", err=True)


def components(
    options: Options, workdir: Path, warmup: Warmup
) -> tuple[Simulators | RealVllm, list[Component]]:
    """The engines (simulated or real), and every component in the order they start."""
    from inferwatch.simulators import demo_reports, demo_slo

    ports = Ports(options.base_port)
    if options.real_vllm:
        from inferwatch.simulators import demo_real

        engines: Simulators | RealVllm = demo_real.RealVllm(ports, workdir)
        fleet: tuple[Deployment, ...] = (demo_real.DEPLOYMENT,)
        slos, advised = demo_real.SLOS, (demo_real.DEPLOYMENT.name,)
    else:
        engines, fleet = Simulators(options.fleet, ports), options.fleet
        slos, advised = demo_slo.FLEET_SLOS, ADVISED
    binary = shutil.which("prometheus") if options.prometheus else None
    if options.prometheus and binary is None:
        _skip("Prometheus", "prometheus is not installed (scripts/setup.sh installs it)")
    # The SLO parts (specs, rules, the service, the advisor) come with the `slo` extra.
    slo_missing = _missing("yaml", "pydantic", "pydantic_settings", "fastapi", "uvicorn")
    if slo_missing is not None:
        _skip(
            "SLO specs, SLO service or advice",
            f"{slo_missing} is missing: pip install 'inferwatch[slo]'",
        )
    sidecars = [Sidecar(d, engines, ports, workdir) for d in fleet]
    out: list[Component] = []
    specs = None
    if slo_missing is None:
        # First: an output folder that cannot be written fails before anything starts.
        specs = demo_slo.SloSpecs(slos, options.out, with_rules=binary is not None)
        out.append(specs)
    out += [engines, Sidecars(sidecars)]
    prometheus = None
    if binary is not None:
        prometheus = Prometheus(binary, sidecars, ports, workdir, specs.rule_dir if specs else None)
        out.append(prometheus)
    # The load, beside the engines it drives.
    if options.real_vllm:
        out.append(demo_real.Waves(engines))  # type: ignore[arg-type]
    for sidecar in sidecars:
        d = sidecar.deployment
        if d.driven > 0:
            out.append(LoadDriver(sidecar, d.model or d.kind.default_model, d.driven))
    if prometheus is not None and specs is not None:
        service = demo_slo.SloService(prometheus, specs, ports, workdir)
        out += [service, demo_slo.SloStatus(service, warmup)]
    if specs is not None:
        by_name = {d.name: d for d in fleet}
        out += [
            demo_reports.Advice(by_name[name], engines, specs, warmup)
            for name in advised
            if name in by_name
        ]
    if prometheus is not None:
        if (module := _missing("matplotlib", "httpx", "grafanalib")) is not None:
            _skip("dashboard previews", f"{module} is missing: pip install 'inferwatch[preview]'")
        else:
            out.append(demo_reports.Previews(prometheus, warmup, options.out, workdir))
    out.append(Summary(sidecars, options.summary_every))
    return engines, out


async def run(options: Options) -> int:
    """Start everything, show where to look, run until the duration or a signal; 0 if clean.

    The reports are due after the warm-up, or at the end of a shorter `--duration`; a run that
    ends by its duration waits for the reports still running, a signal stops at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    due = options.warmup if options.duration is None else min(options.warmup, options.duration)
    warmup = Warmup(due)
    started: list[Component] = []
    code = 0
    with tempfile.TemporaryDirectory(prefix="inferwatch-demo-") as tmp:
        try:
            engines, planned = components(options, Path(tmp), warmup)
            for component in planned:
                start = asyncio.ensure_future(component.start())
                waiter = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if start not in done:
                    start.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StartError):
                        await start
                    started.append(component)  # stop whatever it got running
                    break
                waiter.cancel()
                started.append(component)
                start.result()
            else:
                warmup.begin()
                _announce(engines, started, options, warmup)
                timeout = options.duration if options.duration is not None else math.inf
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), None if math.isinf(timeout) else timeout)
                if not stop.is_set():
                    await _settle(started, stop)
        except StartError as exc:
            typer.echo(f"inferwatch demo: {exc}", err=True)
            code = 1
        finally:
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception as exc:  # keep stopping the others
                    typer.echo(f"inferwatch demo: stopping {component.name}: {exc}", err=True)
                    code = 1
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    if code == 0:
        typer.echo("inferwatch demo: stopped")
    return code


async def _settle(started: list[Component], stop: asyncio.Event) -> None:
    """Wait for the reports still running (at most SETTLE_TIMEOUT, or until a signal)."""
    reports = [asyncio.ensure_future(c.settle()) for c in started if isinstance(c, ReportTask)]
    if not reports:
        return
    waiter = asyncio.ensure_future(stop.wait())
    everything = asyncio.ensure_future(asyncio.gather(*reports))
    done, _ = await asyncio.wait(
        {everything, waiter}, timeout=SETTLE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    waiter.cancel()
    if not done:
        typer.echo(
            f"inferwatch demo: reports still running after {SETTLE_TIMEOUT:.0f} s; stopping",
            err=True,
        )
    if everything not in done:
        everything.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await everything


def _announce(
    engines: Simulators | RealVllm, started: list[Component], options: Options, warmup: Warmup
) -> None:
    if options.real_vllm:
        typer.echo(f"inferwatch demo: a real vLLM on this machine's CPU, namespace {NAMESPACE!r}")
    else:
        typer.echo(
            f"inferwatch demo: {len(options.fleet)} deployments in namespace "
            f"{NAMESPACE!r}, simulated on this machine"
        )
    width = max(len(label) for c in started for label, _ in c.links())
    for component in started:
        for label, url in component.links():
            typer.echo(f"  {label:<{width}}  {url}")
    first = next(iter(engines.urls.values()))
    typer.echo(
        f"  send requests: curl {first}/v1/completions -H 'Content-Type: "
        'application/json\' -d \'{"prompt": "Hello", "max_tokens": 32}\''
    )
    if not options.real_vllm:
        typer.echo(
            "  (an engine without /metrics, like Ollama, is measured only from requests sent "
            "through its sidecar)"
        )
    reports = [c.name for c in started if isinstance(c, ReportTask)]
    if reports:
        typer.echo(
            f"In {warmup.seconds:g} s: {', '.join(reports)}; kept in {options.out.resolve()}"
        )
    if options.duration is None:
        typer.echo("Ctrl-C stops everything.")
