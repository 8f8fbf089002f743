"""`inferwatch demo --real-vllm`: the demo's chain in front of a real vLLM instead of simulators.

1. vLLM 0.32.0 (its CPU build) serving a tiny model built on this machine (`realvllm.py`),
   installed into the cache on first use (about 2 minutes and 2.5 GB, once);
2. the sidecar in front of it, as in a pod;
3. Prometheus with the generated rules and the SLO rules of `SLOS` (when installed), so the
   alerts evaluate real data, and the SLO service over it;
4. a load that comes in waves (`inferwatch load`, streaming): fewer streams than
   `--max-num-seqs`, then three times as many, so the queue fills and drains; one line per
   wave with what the client saw, beside the summary's engine-side figures;
5. after the warm-up, the advice for the deployment, its SLOs and the dashboard previews;
6. the live summary read from the sidecar.

The components are the demo's own (`demo.py`); this module adds the engine, its SLOs and the
load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import typer

from inferwatch.load import LoadError, LoadReport, LoadSpec, run_load_async
from inferwatch.simulators import realvllm
from inferwatch.simulators.demo import (
    HOST,
    NAMESPACE,
    Deployment,
    Ports,
    Process,
    StartError,
)

DEPLOYMENT = Deployment("tiny", "vllm", realvllm.MODEL_NAME, profile="waves")
# (streams, seconds): below the batch limit, then well above it.
WAVES = ((2, 20.0), (3 * realvllm.MAX_NUM_SEQS, 20.0))
MAX_TOKENS = 128
PROMPT_TOKENS = 64


# The deployment's SLOs (the format of slo/spec.py): the tiny model on a CPU answers within
# 0.5 s while the batch has room, and queues in the waves above `--max-num-seqs`.
SLOS = f"""\
# The SLOs of `inferwatch demo --real-vllm`, in the format of slo/spec.py. The SLO service
# reads this file; the rules in rules/ were generated from it
# (`inferwatch alerts build --slo slos.yaml`).
slos:
  - name: tiny-availability
    description: Requests to the tiny model finish without an error or an abort.
    namespace: {NAMESPACE}
    deployment: {DEPLOYMENT.name}
    sli:
      type: availability
    objective: 0.99
    period: 30d

  - name: tiny-ttft
    description: 99% of requests to the tiny model get their first token within 0.5 seconds.
    namespace: {NAMESPACE}
    deployment: {DEPLOYMENT.name}
    engine: vllm
    sli:
      type: latency
      metric: llm_time_to_first_token_seconds
      threshold: 0.5
    objective: 0.99
    period: 30d
"""


@dataclass
class RealVllm:
    """vLLM on a port of the demo's, under the guard that takes its engine core with it."""

    ports: Ports
    workdir: Path
    name: str = "vLLM"
    url: str = ""
    urls: dict[str, str] = field(default_factory=dict)  # as the sidecars read Simulators'
    dcgm_url: str = ""  # no GPU, no dcgm-exporter
    process: Process | None = None

    async def start(self) -> None:
        cache = realvllm.default_cache()
        if not realvllm.is_installed(cache):
            typer.echo(
                f"inferwatch demo: installing vLLM {realvllm.VLLM_VERSION} (CPU) into {cache}: "
                "about 2 minutes and 2.5 GB, once (INFERWATCH_CACHE sets where)",
                err=True,
            )
        try:
            inst = await asyncio.to_thread(realvllm.ensure_installed, cache)
        except realvllm.InstallError as exc:
            raise StartError(f"cannot install vLLM: {exc}") from None
        except OSError as exc:  # the cache cannot be written
            raise StartError(f"cannot install vLLM into {cache}: {exc}") from None
        port = self.ports.take()
        self.url = f"http://{HOST}:{port}"
        try:
            argv, env = realvllm.server_command(inst, port, self.workdir / "vllm")
        except ValueError as exc:
            raise StartError(str(exc)) from None
        self.process = Process("vLLM", argv, self.workdir / "vllm.log", env)
        typer.echo(f"inferwatch demo: starting vLLM (15-35 s; log {self.process.log})", err=True)
        await self.process.spawn()
        async with aiohttp.ClientSession() as session:
            await self.process.wait_ready(
                f"{self.url}/health", session, timeout=realvllm.READY_TIMEOUT
            )
        self.urls[DEPLOYMENT.name] = self.url

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    def links(self) -> list[tuple[str, str]]:
        return [
            (f"vLLM {realvllm.VLLM_VERSION}, model {realvllm.MODEL_NAME}", f"{self.url}/v1"),
            ("  its own metrics", f"{self.url}/metrics"),
        ]


def wave_line(streams: int, report: LoadReport) -> str:
    """One wave, as the client saw it."""
    ttft, e2e = report.ttft, report.e2e
    figures = (
        f"ttft p50 {ttft.p50:.2f} p99 {ttft.p99:.2f}  e2e p50 {e2e.p50:.2f}"
        if ttft is not None and e2e is not None
        else "no answer"
    )
    failed = f", {report.requests_failed} failed" if report.requests_failed else ""
    return (
        f"  load    {streams:>2} streams for {report.duration:.0f} s: "
        f"{report.requests_ok} requests{failed}  ({figures}, client side)"
    )


@dataclass
class Waves:
    """Streaming requests in waves, until stopped."""

    engine: RealVllm
    name: str = "load"
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        for seed, (streams, seconds) in enumerate(itertools.cycle(WAVES)):
            spec = LoadSpec(
                self.engine.url,
                concurrency=streams,
                duration=seconds,
                max_tokens=MAX_TOKENS,
                prompt_tokens=PROMPT_TOKENS,
                stream=True,
                seed=seed,
            )
            try:
                report = await run_load_async(spec)
            except LoadError as exc:  # the server went away: the summary shows it too
                typer.echo(f"  load    stopped: {exc}", err=True)
                return
            typer.echo(wave_line(streams, report))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def links(self) -> list[tuple[str, str]]:
        return [
            (
                "  send your own load",
                f"inferwatch load --target {self.engine.url} --concurrency 8 --stream",
            )
        ]
