"""What the demo reports after its warm-up, each as the command a user would run:

    Advice     `inferwatch advise --upstream <engine>` for a deployment: it samples the engine's
               own /metrics over the last stretch of the warm-up, so it needs no Prometheus
    Previews   `inferwatch dashboards preview`: every dashboard as a PNG, drawn from the demo's
               Prometheus over everything it has scraped

Both run as subprocesses: the advisor and matplotlib would otherwise hold this process, whose
event loop serves the simulators that the sidecars and Prometheus are scraping. Their output is
written into the demo's output folder and printed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inferwatch.simulators.demo import (
    NAMESPACE,
    Deployment,
    Process,
    Prometheus,
    ReportTask,
    Simulators,
    Warmup,
    inferwatch_argv,
)
from inferwatch.simulators.demo_slo import SloSpecs

if TYPE_CHECKING:
    from inferwatch.simulators.demo_real import RealVllm

# The advisor samples the engine over the last ADVICE_WINDOW seconds of the warm-up (for chat,
# the overloaded phase of its waves), a page every ADVICE_INTERVAL; a shorter run gets a
# shorter window (at least MIN_WINDOW), still with MIN_PAGES pages: the advisor judges no
# fewer than 5 readings.
ADVICE_WINDOW = 40.0
ADVICE_INTERVAL = 5.0
MIN_WINDOW = 1.0
MIN_PAGES = 5


def sampling(due: float) -> tuple[float, float]:
    """(window, interval) in seconds for advice due `due` seconds after the start."""
    window = max(MIN_WINDOW, min(ADVICE_WINDOW, due))
    return window, min(ADVICE_INTERVAL, window / (MIN_PAGES - 1))


@dataclass
class Advice(ReportTask):
    deployment: Deployment
    engines: Simulators | RealVllm
    specs: SloSpecs
    warmup: Warmup
    name: str = ""
    process: Process | None = None

    def __post_init__(self) -> None:
        self.name = f"advice for {self.deployment.name}"

    @property
    def path(self) -> Path:
        return self.specs.out / f"advice-{self.deployment.name}.txt"

    def argv(self, window: float, interval: float) -> list[str]:
        d = self.deployment
        return inferwatch_argv(
            "advise", "--upstream", self.engines.urls[d.name],
            "--window", f"{window:g}s", "--interval", f"{interval:g}s",
            "--namespace", NAMESPACE, "--deployment", d.name,
            "--config", str(self.specs.path), "--kubernetes", "off",
        )  # fmt: skip

    async def report(self) -> None:
        window, interval = sampling(self.warmup.seconds)
        await self.warmup.until_due(before=window)
        self.process = Process(self.name, self.argv(window, interval), self.path)
        try:
            await self.process.spawn()
            code = await self.process.wait()
        finally:
            await self.process.stop()  # cancelled (Ctrl-C): the advisor stops too
        how = f"{window:g} s of its engine's /metrics"
        if code != 0:
            typer.echo(
                f"inferwatch demo: no advice for {self.deployment.name} ({how}; exit code "
                f"{code}):\n{self.process.tail()}",
                err=True,
            )
            return
        typer.echo(f"inferwatch demo: advice for {NAMESPACE}/{self.deployment.name}, from {how}")
        typer.echo(self.path.read_text(encoding="utf-8", errors="replace").rstrip())

    def links(self) -> list[tuple[str, str]]:
        return [(f"advice for {self.deployment.name}, after the warm-up", str(self.path))]


@dataclass
class Previews(ReportTask):
    prometheus: Prometheus
    warmup: Warmup
    out: Path
    workdir: Path
    name: str = "dashboard previews"
    process: Process | None = None

    @property
    def folder(self) -> Path:
        return self.out / "previews"

    async def report(self) -> None:
        await self.warmup.until_due()
        # Everything Prometheus has scraped.
        seconds = math.ceil(time.monotonic() - self.prometheus.started)
        self.process = Process(
            self.name,
            inferwatch_argv(
                "dashboards", "preview", "--prometheus", self.prometheus.url,
                "--out", str(self.folder), "--range", f"{seconds}s",
            ),
            self.workdir / "previews.log",
        )  # fmt: skip
        try:
            await self.process.spawn()
            code = await self.process.wait()
        finally:
            await self.process.stop()
        if code != 0:
            typer.echo(
                f"inferwatch demo: the dashboard previews failed (exit code {code}):\n"
                f"{self.process.tail()}",
                err=True,
            )
            return
        written = self.process.tail(lines=100).splitlines()
        typer.echo(f"inferwatch demo: dashboard previews of the last {seconds} s, from Prometheus")
        for path in written:
            typer.echo(f"  {path}")

    def links(self) -> list[tuple[str, str]]:
        return [("dashboard previews, after the warm-up", f"{self.folder}/")]
