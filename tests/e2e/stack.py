"""The whole chain in front of a real vLLM, as a user runs it: the sidecar, Prometheus with the
generated rules, Alertmanager and a webhook receiver.

    stack = Stack.start(server, workdir)
    stack.sidecar_totals(), stack.prom_total("llm_generation_tokens_total", at=t)
    stack.recommendations()  # the SLO service's GET /v1/recommendations for the deployment
    stack.stop()

The sidecar is the real `inferwatch exporter` process with the pod identity the Downward API
gives it; Prometheus scrapes it every second with the labels our PodMonitor gives a pod and
evaluates the rules `inferwatch alerts build` writes, rendered with every `for:` at 5s through
the alert config users override (as tests/test_alerts_e2e.py does), so alerts fire within
seconds, and with the SLOs of slos.yaml beside the examples; Alertmanager sends every alert to
one webhook receiver; the SLO service (`inferwatch slo serve`) reads that Prometheus with the
same SLOs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from inferwatch import schema
from inferwatch.alerts import build, promql
from inferwatch.slo import spec as slo_spec
from tests.e2e.realvllm import VllmServer
from tests.harness import loopback, procs
from tests.harness.alertmanager import Alertmanager, WebhookReceiver
from tests.harness.exporter import ExporterProcess, inferwatch_command
from tests.harness.prometheus import Prometheus, pod_labels, scrape_job
from tests.test_alerts_e2e import FAST

NAMESPACE, DEPLOYMENT, POD = "e2e", "tiny-vllm", "tiny-vllm-0"
SELECTOR = (
    f'namespace={promql.quote(NAMESPACE)}, deployment={promql.quote(DEPLOYMENT)}, engine="vllm"'
)
# What the suite counts exactly: the sidecar's families, summed over their label sets.
COUNTED = (
    "llm_requests_finished_total",
    "llm_prompt_tokens_total",
    "llm_generation_tokens_total",
    "llm_time_to_first_token_seconds_count",
    "llm_request_duration_seconds_count",
)
SETTLE_TIMEOUT = 15.0  # seconds for the sidecar and Prometheus to show finished requests
SLOS = Path(__file__).with_name("slos.yaml")
# The SLO service's advisor window: it reads gauges at 30 s steps and judges no fewer than 5.
ADVICE_WINDOW = "150s"


def rule_files(out: Path) -> list[Path]:
    """The generated rules with 5s `for:` durations and the example SLOs plus ours."""
    specs = slo_spec.load_all([build.EXAMPLE_SLOS, SLOS])
    build.write(build.render(FAST, specs), out)
    return sorted((out / "rules").glob("*.rules.yaml"))


def totals(page: str, names: tuple[str, ...] = COUNTED) -> dict[str, float]:
    """Each sample name's value summed over its label sets, in one exposition."""
    sums = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return sums


@dataclass
class Stack:
    server: VllmServer
    sidecar: ExporterProcess
    prom: Prometheus
    alertmanager: Alertmanager
    hook: WebhookReceiver
    slo_service: procs.Proc
    slo_url: str
    rules: list[Path]
    started: float  # unix time at which Prometheus first scraped the sidecar

    @classmethod
    def start(cls, server: VllmServer, workdir: Path) -> Stack:
        rules = rule_files(workdir / "rules")
        hook = WebhookReceiver().start()
        parts: list = [hook]
        try:
            sidecar = ExporterProcess(
                workdir / "sidecar",
                upstream=server.base_url,
                env={"POD_NAME": POD, "POD_NAMESPACE": NAMESPACE},
            ).start()
            parts.append(sidecar)
            am = Alertmanager(workdir / "alertmanager", webhook_url=hook.url).start()
            parts.append(am)
            labels = pod_labels(namespace=NAMESPACE, pod=POD, deployment=DEPLOYMENT)
            prom = Prometheus(
                workdir / "prometheus",
                scrape_configs=[scrape_job("inferwatch", sidecar.address, labels)],
                rule_files=rules,
                alertmanager_url=am.url,
            ).start()
            parts.append(prom)
            slo_service, slo_url = _slo_service(workdir / "slo", prom.url)
            parts.append(slo_service)
            prom.wait_targets_up(timeout=60)
        except BaseException:
            for part in reversed(parts):
                part.stop()
            raise
        return cls(server, sidecar, prom, am, hook, slo_service, slo_url, rules, time.time())

    def stop(self) -> None:
        self.slo_service.stop()
        self.prom.stop()
        self.alertmanager.stop()
        self.sidecar.stop()
        self.hook.stop()

    def processes(self) -> list[int]:
        parts = (self.slo_service, self.prom.proc, self.alertmanager.proc, self.sidecar.proc)
        return [p.pid for p in parts if p]

    def recommendations(self) -> dict:
        """The SLO service's advice for this deployment (`GET /v1/recommendations`)."""
        query = f"namespace={NAMESPACE}&deployment={DEPLOYMENT}"
        url = f"{self.slo_url}/v1/recommendations?{query}"
        with loopback.urlopen(url, timeout=60) as resp:
            return json.load(resp)

    # -- reading what each part counted ------------------------------------------------------

    def sidecar_totals(self) -> dict[str, float]:
        return totals(self.sidecar.metrics().body)

    def sidecar_families(self) -> set[str]:
        """The schema's families of which the sidecar exports at least one sample."""
        page = self.sidecar.metrics().body
        names = {s.name for f in text_string_to_metric_families(page) for s in f.samples}
        return {f.name for f in schema.FAMILIES if names & set(f.sample_names)}

    def prom_total(self, name: str, at: float) -> float:
        """`sum(name)` over this deployment's series, at unix time `at`."""
        result = self.prom.vector(f"sum({name}{{{SELECTOR}}})", at=at)
        return result[0].value if result else 0.0

    def settle(self, expected: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
        """Wait until the sidecar shows `expected` (or stops changing, when None) and
        Prometheus has scraped that; the sidecar's totals and a unix time at which an instant
        query sees them. Returns what it has after SETTLE_TIMEOUT, for the caller to assert."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last = self.sidecar_totals()
        while time.monotonic() < deadline:
            time.sleep(0.5)  # vLLM records a request just after answering it
            now = self.sidecar_totals()
            done = now == expected if expected is not None else now == last
            last = now
            if done:
                break
        while True:
            at = time.time()
            if all(self.prom_total(name, at) == value for name, value in last.items()):
                return last, at
            if time.monotonic() >= deadline + SETTLE_TIMEOUT:
                return last, at
            time.sleep(0.25)


def _slo_service(workdir: Path, prometheus: str) -> tuple[procs.Proc, str]:
    """`inferwatch slo serve` over `prometheus` with the suite's SLOs, on a free port."""
    url = ""

    def launch(port: int) -> procs.Proc:
        nonlocal url
        url = f"http://127.0.0.1:{port}"
        return procs.start(
            [
                *inferwatch_command(), "slo", "serve", "--prometheus", prometheus,
                "--config", str(SLOS), "--listen", f"127.0.0.1:{port}",
                "--window", ADVICE_WINDOW, "--kubernetes", "off", "--log-level", "warning",
            ],
            name=f"slo-service-{port}",
            workdir=workdir,
            ready_url=f"{url}/healthz",
        )  # fmt: skip

    return procs.on_free_port(launch), url
