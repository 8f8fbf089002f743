"""End to end: an overloaded engine's alert travels to a webhook through real components.

A vLLM simulator is driven into overload (`--profile overload`: a queue, a full KV cache,
preemptions, slow first tokens). The real `inferwatch exporter` sidecar sits in front of it;
a real Prometheus scrapes the sidecar with the labels our PodMonitor gives a pod and evaluates
the rules `inferwatch alerts build` generates; a real Alertmanager, configured with the example
deploy/alertmanager/alertmanager.yml, delivers to a webhook receiver in the test.

The rules are rendered by the same builder as the committed ones with one change, made through
the config object users override: every `for` is 5s instead of minutes, so the test takes
seconds. The recording and SLO rule files are the committed ones, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inferwatch.alerts import build, conventions
from inferwatch.alerts.config import AlertConfig
from tests.conftest import ROOT
from tests.harness import procs
from tests.harness.alertmanager import Alertmanager, WebhookReceiver
from tests.harness.exporter import ExporterProcess, inferwatch_command
from tests.harness.prometheus import Prometheus, pod_labels, scrape_job
from tests.test_alerts_alertmanager import config_for

pytestmark = pytest.mark.prometheus

NAMESPACE, DEPLOYMENT, POD, MODEL = "llm", "chat-vllm", "chat-vllm-0", "llama-3-8b"
FAST = AlertConfig(**{name: "5s" for name in AlertConfig.model_fields if name.endswith("_for")})
RUNBOOKS = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md"


def fast_rules(out: Path) -> list[Path]:
    files = build.render(FAST)
    build.write(files, out)
    committed = ROOT / "alerts" / "generated"
    for name in ("rules/inferwatch-recording.rules.yaml", "rules/inferwatch-slos.rules.yaml"):
        assert files[name] == (committed / name).read_text(), f"{name} differs from the commit"
    return sorted((out / "rules").glob("*.rules.yaml"))


def simulator(workdir: Path, *args: str) -> tuple[procs.Proc, str]:
    url = ""

    def launch(port: int) -> procs.Proc:
        nonlocal url
        url = f"http://127.0.0.1:{port}"
        return procs.start(
            [*inferwatch_command(), "simulate", "--listen", f"127.0.0.1:{port}", *args],
            name=f"simulator-{port}",
            workdir=workdir,
            ready_url=f"{url}/health",
        )

    return procs.on_free_port(launch), url


@pytest.fixture
def ticket_and_page() -> Iterator[dict[str, WebhookReceiver]]:
    hooks = {name: WebhookReceiver().start() for name in ("page", "ticket")}
    yield hooks
    for hook in hooks.values():
        hook.stop()


def test_overload_alert_reaches_the_webhook_with_its_labels_and_annotations(
    tmp_path: Path,
    alertmanager_factory: Callable[..., Alertmanager],
    prometheus_factory: Callable[..., Prometheus],
    ticket_and_page: dict[str, WebhookReceiver],
) -> None:
    rules = fast_rules(tmp_path / "rules")
    engine, engine_url = simulator(
        tmp_path, "--engine", "vllm", "--model", MODEL, "--profile", "overload", "--seed", "7"
    )
    exporter = ExporterProcess(
        tmp_path, upstream=engine_url, env={"POD_NAME": POD, "POD_NAMESPACE": NAMESPACE}
    ).start()
    try:
        am = alertmanager_factory(config=config_for(ticket_and_page))
        labels = pod_labels(namespace=NAMESPACE, pod=POD, deployment=DEPLOYMENT)
        prom = prometheus_factory(
            scrape_configs=[scrape_job("inferwatch", exporter.address, labels)],
            rule_files=rules,
            alertmanager_url=am.url,
        )
        prom.wait_targets_up(timeout=60)

        wanted = {conventions.KV_CACHE_NEARLY_FULL, conventions.TTFT_HIGH}
        alerts = ticket_and_page["ticket"].wait_for(
            lambda alerts: wanted <= {_name(a) for a in alerts}, timeout=120
        )
    finally:
        exporter.stop()
        engine.stop()

    kv = next(a for a in alerts if _name(a) == conventions.KV_CACHE_NEARLY_FULL)
    assert kv["status"] == "firing"
    assert kv["labels"] == {
        "alertname": "LLMKVCacheNearlyFull",
        "severity": "warning",
        "namespace": NAMESPACE,
        "deployment": DEPLOYMENT,
        "pod": POD,
        "engine": "vllm",
        "model": MODEL,
    }
    assert kv["annotations"]["summary"] == (
        "The KV cache of an inference pod has been nearly full for a sustained time."
    )
    assert kv["annotations"]["runbook_url"] == f"{RUNBOOKS}#llmkvcachenearlyfull"
    assert re.fullmatch(
        rf"The KV cache of pod {NAMESPACE}/{POD}, model {MODEL} \(vllm\), has been above 95% "
        r"for 5s: (9[5-9](\.\d+)?|100)% in use\. New requests wait or preempt running ones\.",
        kv["annotations"]["description"],
    ), kv["annotations"]["description"]
    # A model-level alert, read from the recorded p95 of the engine's own buckets.
    ttft = next(a for a in alerts if _name(a) == conventions.TTFT_HIGH)
    assert ttft["labels"] == {
        "alertname": "LLMTimeToFirstTokenHigh",
        "severity": "warning",
        "namespace": NAMESPACE,
        "deployment": DEPLOYMENT,
        "engine": "vllm",
        "model": MODEL,
    }
    assert ttft["annotations"]["runbook_url"] == f"{RUNBOOKS}#llmtimetofirsttokenhigh"
    assert re.fullmatch(
        rf"The p95 time to first token of model {MODEL} \(vllm\) in {NAMESPACE}/{DEPLOYMENT} "
        r"is [\d.]+(ms|s|m \d+s), above the 2s target for 5s\.",
        ttft["annotations"]["description"],
    ), ttft["annotations"]["description"]
    # A warning is a ticket, never a page; the notification groups by namespace and model.
    assert ticket_and_page["page"].alerts() == []
    (group,) = {
        tuple(sorted(n["groupLabels"].items()))
        for n in ticket_and_page["ticket"].notifications
        if any(_name(a) == conventions.KV_CACHE_NEARLY_FULL for a in n["alerts"])
    }
    assert group == (("model", MODEL), ("namespace", NAMESPACE))


def _name(alert: dict) -> str:
    return alert["labels"]["alertname"]


def test_fast_config_changes_only_durations() -> None:
    slow = build.render()["rules/inferwatch-alerts.rules.yaml"]
    fast = build.render(FAST)["rules/inferwatch-alerts.rules.yaml"]
    normalize = lambda text: re.sub(r"\b\d+[smh]\b", "D", text)  # noqa: E731
    assert slow != fast
    assert normalize(slow) == normalize(fast)
