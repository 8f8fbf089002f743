"""The demo's SLOs: specs for its deployments, the rules generated from them, the SLO service
over the demo's Prometheus, and what that service says of each SLO after the warm-up.

    SloSpecs      writes slos.yaml (and, for Prometheus, the rules `inferwatch alerts build
                  --slo slos.yaml` writes) into the demo's output folder
    SloService    `inferwatch slo serve --prometheus <the demo's> --config slos.yaml`
    SloStatus     at the warm-up: one line per SLO from `GET /v1/slos`

The rules are rendered, not copied from alerts/generated/: the committed SLO rules are those of
the example specs (`slo/examples/`), whose deployments the demo does not run. The recording and
alert rules rendered with them are the committed ones byte for byte (a test checks that the
committed files are what the generator writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import typer

from inferwatch.simulators.demo import (
    HOST,
    NAMESPACE,
    Ports,
    Process,
    Prometheus,
    ReportTask,
    StartError,
    Warmup,
    inferwatch_argv,
)

# The simulated fleet's SLOs (`demo.FLEET`): chat's load comes in waves, so its first-token
# latency SLO burns through its budget in each overloaded phase; the others hold.
FLEET_SLOS = """\
# The SLOs of `inferwatch demo`'s simulated fleet, in the format of slo/spec.py. The SLO
# service reads this file; the rules in rules/ were generated from it
# (`inferwatch alerts build --slo slos.yaml`).
slos:
  - name: chat-availability
    description: Chat requests finish without an error or an abort.
    namespace: demo
    deployment: chat
    sli:
      type: availability
    objective: 0.999
    period: 30d

  - name: chat-ttft
    description: 99% of chat requests get their first token within 1 second.
    namespace: demo
    deployment: chat
    engine: vllm
    sli:
      type: latency
      metric: llm_time_to_first_token_seconds
      threshold: 1.0
    objective: 0.99
    period: 30d

  - name: agents-ttft
    description: 95% of agent requests get their first token within 2 seconds.
    namespace: demo
    deployment: agents
    engine: sglang
    sli:
      type: latency
      metric: llm_time_to_first_token_seconds
      threshold: 2.0
    objective: 0.95
    period: 30d

  - name: assist-latency
    description: 95% of assistant requests finish within 8.5 seconds (a TGI bucket boundary).
    namespace: demo
    deployment: assist
    engine: tgi
    sli:
      type: latency
      metric: llm_request_duration_seconds
      threshold: 8.52226929923929
    objective: 0.95
    period: 28d
"""
# How far back the SLO service's advisor looks: it reads 30 s steps and judges no fewer than 5
# of them, so it has advice after about 3 minutes of the demo.
SERVICE_WINDOW = "10m"
STATUS_TIMEOUT = 30.0


@dataclass
class SloSpecs:
    """The demo's SLO specs in its output folder, and the rule files Prometheus evaluates."""

    text: str
    out: Path
    with_rules: bool
    name: str = "SLO specs"

    @property
    def path(self) -> Path:
        return self.out / "slos.yaml"

    @property
    def rule_dir(self) -> Path:
        return self.out / "rules"

    async def start(self) -> None:
        from inferwatch.alerts import build
        from inferwatch.alerts.config import AlertConfig
        from inferwatch.slo import spec as slo_spec

        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self.text, encoding="utf-8")
        except OSError as exc:
            raise StartError(
                f"cannot write the demo's files into {self.out}: {exc.strerror or exc} "
                "(--out chooses another folder)"
            ) from None
        specs = slo_spec.parse(self.text, str(self.path))
        if not self.with_rules:
            return
        # Only the plain rule files: the PrometheusRule objects and the backfill file are for
        # a cluster and for history, which the demo has neither of.
        files = {
            Path(rel).name: text
            for rel, text in build.render(AlertConfig(), specs).items()
            if rel.startswith("rules/")
        }
        try:
            self.rule_dir.mkdir(exist_ok=True)
            for name, text in files.items():
                (self.rule_dir / name).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise StartError(f"cannot write {self.rule_dir}: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        """The specs and rules stay in the output folder for the user to read."""

    def links(self) -> list[tuple[str, str]]:
        out = [("SLO specs", str(self.path))]
        if self.with_rules:
            out.append(("  rules generated from them", str(self.rule_dir)))
        return out


@dataclass
class SloService:
    """`inferwatch slo serve` over the demo's Prometheus and SLO specs.

    Reading Deployments from Kubernetes is off: the demo's pods are not in a cluster, and a
    kubeconfig on the user's machine would point the advisor at someone else's Deployments.
    """

    prometheus: Prometheus
    specs: SloSpecs
    ports: Ports
    workdir: Path
    name: str = "SLO service"
    url: str = ""
    process: Process | None = None

    async def start(self) -> None:
        port = self.ports.take()
        self.url = f"http://{HOST}:{port}"
        self.process = Process(
            self.name,
            inferwatch_argv(
                "slo", "serve", "--prometheus", self.prometheus.url,
                "--config", str(self.specs.path), "--listen", f"{HOST}:{port}",
                "--window", SERVICE_WINDOW, "--kubernetes", "off", "--log-level", "warning",
            ),
            self.workdir / "slo-service.log",
        )  # fmt: skip
        await self.process.spawn()
        async with aiohttp.ClientSession() as session:
            await self.process.wait_ready(f"{self.url}/readyz", session)

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    def links(self) -> list[tuple[str, str]]:
        return [
            ("SLO service: budgets, burn rates, recommendations", f"{self.url}/"),
            ("  its API", f"{self.url}/docs"),
        ]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _burn(status: dict, window: str) -> str:
    rate = next((w["burn_rate"] for w in status["burn_rates"] if w["window"] == window), None)
    return "-" if rate is None else f"{rate:.1f}x"


def status_line(status: dict) -> str:
    """One SLO as the service judged it (an item of `GET /v1/slos`): the good ratio so far
    against the objective, the budget left, the burn rates, and which alerts would fire."""
    left = status["budget_remaining"]
    objective = f"{status['objective'] * 100:g}%"
    firing = ", ".join(status["firing"])
    return (
        f"  {status['name']:<18} {status['deployment']:<7} "
        f"good {_percent(status['sli_value']):>7}, objective {objective:<6}"
        f"  budget left {'-' if left is None else format(left, '.0%'):>6}"
        f"  burn 5m {_burn(status, '5m'):>6}  1h {_burn(status, '1h'):>6}"
        + (f"  would fire: {firing}" if firing else "")
    )


@dataclass
class SloStatus(ReportTask):
    """After the warm-up: every SLO's budget and burn rates, as `GET /v1/slos` answers."""

    service: SloService
    warmup: Warmup
    name: str = "SLO status"

    async def report(self) -> None:
        await self.warmup.until_due()
        url = f"{self.service.url}/v1/slos"
        # A token in the environment reaches the service too, which then requires it.
        token = os.environ.get("INFERWATCH_SLO_TOKEN", "").strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT)
                ) as resp,
            ):
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}: {body.get('detail', body)}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            typer.echo(f"inferwatch demo: the SLO service did not answer {url}: {exc}", err=True)
            return
        typer.echo(f"inferwatch demo: the SLOs of namespace {NAMESPACE!r}, from {url}")
        for status in body:
            typer.echo(status_line(status))

    def links(self) -> list[tuple[str, str]]:
        return []
