"""Rollouts: the candidate beside each base, the Istio and APISIX traffic splits, and our SLIs as
Argo Rollouts / Flagger analysis.

The overlays are built with a real `kubectl kustomize` and validated against the published CRD
schemas (tests/fixtures/crds); the analysis PromQL runs on a real Prometheus scraping pages of
normalized series for a baseline, a slower candidate and a Flagger canary, and the Argo
conditions are evaluated on what it answers. Staleness of the rendered tree is
`test_deploy.py`'s (render.files() includes every file here).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from inferwatch.deploy import manifests, render, rollouts, sidecar
from inferwatch.deploy.frameworks import FRAMEWORKS
from tests.conftest import ROOT
from tests.harness.pages import PageServer
from tests.harness.prometheus import Prometheus, pod_labels, scrape_job
from tests.test_deploy import DEPLOY, build, kubectl, one
from tests.test_deploy_schemas import K8S_VERSIONS, errors

SPLITS = ("canary-istio", "canary-apisix")
NEW_FOLDERS = [
    *(f"{name}/{folder}" for name in FRAMEWORKS for folder in ("candidate", *SPLITS)),
    "rollouts/argo",
    "rollouts/flagger",
]


def by_name(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --- rendered, built and valid ----------------------------------------------------------------


def test_render_writes_every_new_folder_and_the_staleness_test_covers_them():
    wanted = render.files()
    for folder in NEW_FOLDERS:
        assert f"{folder}/kustomization.yaml" in wanted, folder
    covered = set(render.generated_dirs())
    assert {"rollouts/argo", "rollouts/flagger", *FRAMEWORKS} <= covered


@pytest.mark.parametrize("folder", NEW_FOLDERS)
def test_every_new_overlay_builds_and_validates_against_its_schemas(folder):
    docs = build(folder)
    assert docs
    found = [e for doc in docs for v in (K8S_VERSIONS[0], K8S_VERSIONS[-1]) for e in errors(doc, v)]
    assert found == []


@pytest.mark.parametrize(
    "kind, mutate, expected",
    [
        (
            "VirtualService",
            lambda o: o["spec"]["http"][0]["route"][0].update(wieght=10),
            "Additional properties",
        ),
        (
            "VirtualService",
            lambda o: o["spec"]["http"][0]["route"][0]["destination"].pop("host"),
            "'host' is a required property",
        ),
        (
            "ApisixRoute",
            lambda o: o["spec"]["http"][0]["backends"][0].update(weight="ninety"),
            "is not of type 'integer'",
        ),
        ("ApisixRoute", lambda o: o["spec"]["http"][0].pop("name"), "'name' is a required"),
        (
            "AnalysisTemplate",
            lambda o: o["spec"]["metrics"][0].pop("provider"),
            "'provider' is a required property",
        ),
        (
            "AnalysisTemplate",
            lambda o: o["spec"]["metrics"][0]["provider"]["prometheus"].update(qeury="up"),
            "Additional properties",
        ),
        (
            "MetricTemplate",
            lambda o: o["spec"]["provider"].update(type="prom"),
            "is not one of",
        ),
        ("MetricTemplate", lambda o: o["spec"].pop("query"), "'query' is a required property"),
    ],
    ids=[
        "vs typo",
        "vs destination without host",
        "apisix weight as text",
        "apisix route without name",
        "analysis metric without provider",
        "analysis prometheus typo",
        "metrictemplate unknown provider",
        "metrictemplate without query",
    ],
)
def test_the_crd_schemas_reject_broken_objects(kind, mutate, expected):
    sources = {
        "VirtualService": lambda: rollouts.virtual_service(FRAMEWORKS["vllm"]),
        "ApisixRoute": lambda: rollouts.apisix_route(FRAMEWORKS["vllm"]),
        "AnalysisTemplate": rollouts.analysis_template,
        "MetricTemplate": lambda: rollouts.metric_templates()[0],
    }
    obj = copy.deepcopy(sources[kind]())
    assert errors(obj, "1.32.0") == []
    mutate(obj)
    found = " ".join(errors(obj, "1.32.0"))
    assert expected in found, found


# --- the two variants -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_baseline_and_candidate_select_distinct_pods_and_deployment_labels(name):
    for split in SPLITS:
        docs = build(f"{name}/{split}")
        base, cand = name, rollouts.candidate_name(FRAMEWORKS[name])
        deployments = by_name(docs, "Deployment")
        assert set(deployments) == {base, cand}
        pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
        # The label our SLIs select by: each variant is its own `deployment`.
        assert pods[base][sidecar.LABEL_DEPLOYMENT] == base
        assert pods[cand][sidecar.LABEL_DEPLOYMENT] == cand
        for own, other in ((base, cand), (cand, base)):
            for kind, path in (
                ("Deployment", ("spec", "selector", "matchLabels")),
                ("Service", ("spec", "selector")),
                ("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
                ("PodMonitor", ("spec", "selector", "matchLabels")),
            ):
                selector: Any = by_name(docs, kind)[own]
                for key in path:
                    selector = selector[key]
                assert selects(selector, pods[own]), f"{split}: {kind} {own} misses its pods"
                assert not selects(selector, pods[other]), f"{split}: {kind} {own} takes {other}'s"
            hpa = by_name(docs, "HorizontalPodAutoscaler")[own]
            assert hpa["spec"]["scaleTargetRef"]["name"] == own


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_the_split_routes_by_weights_summing_to_100_to_the_two_services(name):
    fw = FRAMEWORKS[name]
    expected = {name: 100 - rollouts.CANDIDATE_WEIGHT, rollouts.candidate_name(fw): 10}
    istio = build(f"{name}/canary-istio")
    services = by_name(istio, "Service")
    route = one(istio, "VirtualService")["spec"]["http"][0]["route"]
    weights = {r["destination"]["host"]: r["weight"] for r in route}
    assert weights == expected and sum(weights.values()) == 100
    assert one(istio, "VirtualService")["spec"]["hosts"] == [name]  # clients keep the old name
    for r in route:
        ports = {p["port"] for p in services[r["destination"]["host"]]["spec"]["ports"]}
        assert r["destination"]["port"]["number"] in ports

    apisix = build(f"{name}/canary-apisix")
    services = by_name(apisix, "Service")
    backends = one(apisix, "ApisixRoute")["spec"]["http"][0]["backends"]
    weights = {b["serviceName"]: b["weight"] for b in backends}
    assert weights == expected and sum(weights.values()) == 100
    for b in backends:
        assert b["servicePort"] in {p["port"] for p in services[b["serviceName"]]["spec"]["ports"]}


def test_the_weight_is_set_in_one_place(monkeypatch):
    monkeypatch.setattr(rollouts, "CANDIDATE_WEIGHT", 25)
    fw = FRAMEWORKS["tgi"]
    vs = [r["weight"] for r in rollouts.virtual_service(fw)["spec"]["http"][0]["route"]]
    ar = [b["weight"] for b in rollouts.apisix_route(fw)["spec"]["http"][0]["backends"]]
    assert vs == ar == [75, 25]
    monkeypatch.setattr(rollouts, "CANDIDATE_WEIGHT", 101)
    with pytest.raises(ValueError, match="not a percentage"):
        rollouts.weights()


def test_setting_the_candidates_image_changes_the_candidate_alone(tmp_path):
    """The candidate starts as an A/A copy; `kustomize edit set image` in its folder (here: its
    `images:` entry) makes it the new version without touching the baseline or the sidecar."""
    for folder in ("base", "candidate", "canary-istio"):
        shutil.copytree(DEPLOY / "vllm" / folder, tmp_path / folder)
    image, _, tag = FRAMEWORKS["vllm"].image.rpartition(":")
    kustomization = tmp_path / "candidate" / "kustomization.yaml"
    assert f"newTag: {tag}" in kustomization.read_text()
    kustomization.write_text(kustomization.read_text().replace(f"newTag: {tag}", "newTag: v9.9.9"))
    out = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path / "canary-istio")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    images = {
        d["metadata"]["name"]: {
            c["name"]: c["image"] for c in d["spec"]["template"]["spec"]["containers"]
        }
        for d in yaml.safe_load_all(out.stdout)
        if d and d["kind"] == "Deployment"
    }
    assert images["vllm"]["vllm"] == f"{image}:{tag}"
    assert images["vllm-candidate"]["vllm-candidate"] == f"{image}:v9.9.9"
    assert {i[sidecar.CONTAINER_NAME] for i in images.values()} == {sidecar.IMAGE}


# --- the analysis templates, as text -----------------------------------------------------------


def test_the_analysis_template_declares_every_argument_it_uses_and_uses_every_one():
    template = rollouts.analysis_template()
    declared = {a["name"] for a in template["spec"]["args"]}
    used = set(re.findall(r"\{\{args\.([a-z-]+)\}\}", yaml.safe_dump(template["spec"]["metrics"])))
    assert used == declared
    required = {a["name"] for a in template["spec"]["args"] if "value" not in a}
    assert required == {"namespace", "baseline", "candidate"}
    for metric in template["spec"]["metrics"]:
        # Argo's metric validation: count >= failureLimit and >= inconclusiveLimit.
        assert metric["count"] >= metric["failureLimit"]
        assert metric["count"] >= metric["inconclusiveLimit"]
        assert metric["interval"] == rollouts.WINDOW
        assert f"[{rollouts.WINDOW}]" in metric["provider"]["prometheus"]["query"]


def test_flagger_queries_use_only_flaggers_variables_and_select_canary_pods():
    for name, query in rollouts.flagger_queries().items():
        assert set(re.findall(r"\{\{[^}]*\}\}", query)) == {
            "{{ namespace }}",
            "{{ target }}",
            "{{ interval }}",
        }, name
        assert rollouts._INTERVAL_STANDIN not in query
        assert 'deployment="' not in query  # Flagger's primary and canary share that label


def test_queries_read_each_request_once_and_name_only_schema_families():
    from inferwatch.schema import FAMILIES

    samples = {s for f in FAMILIES for s in f.sample_names}
    texts = [*rollouts.argo_queries().values(), *rollouts.flagger_queries().values()]
    for text in texts:
        names = set(re.findall(r"\b(llm_[a-z_]+)\{", text))
        assert names and names <= samples
        # Each selector of a proxy-measured family is split by `source` (queries.one_source).
        assert text.count('source!="proxy"') == text.count('source="proxy"') > 0


# --- on a real Prometheus ---------------------------------------------------------------------

NAMESPACE = "llm"
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5)
# (pod, deployment label, bucket index of every observation, finished requests, errors)
BASELINE = ("vllm-6d4cf56db6-q4r5s", "vllm", 1, 600, 0)
CANDIDATE = ("vllm-candidate-7b9f8c6d5-x2x9q", "vllm-candidate", 3, 400, 20)
# What Flagger runs for a Deployment `chat`: `chat` is its canary, `chat-primary` the baseline;
# both pods carry the template's `inferwatch.io/deployment: chat`, so only the pod name tells
# them apart.
FLAGGER_PRIMARY = ("chat-primary-5c7f9d8b7-k8s2p", "chat", 1, 600, 0)
FLAGGER_CANARY = ("chat-5f6d7c8b9-m3n4p", "chat", 4, 300, 3)
TARGETS = (BASELINE, CANDIDATE, FLAGGER_PRIMARY, FLAGGER_CANARY)


def p95_of(bucket: int) -> float:
    """histogram_quantile(0.95) when every observation is in one bucket: interpolated in it."""
    lower = BUCKETS[bucket - 1] if bucket else 0.0
    return lower + (BUCKETS[bucket] - lower) * rollouts.QUANTILE


def page(bucket: int, requests: int, failed: int, step: int) -> str:
    """Normalized series of one pod after `step` equal periods of traffic."""
    n, labels = requests * step, 'engine="vllm",model="llama"'
    lines = []
    for family in ("llm_time_to_first_token_seconds", "llm_time_per_output_token_seconds"):
        lines.append(f"# TYPE {family} histogram")
        for i, le in enumerate(BUCKETS):
            lines.append(f'{family}_bucket{{{labels},le="{le}"}} {n if i >= bucket else 0}')
        lines.append(f'{family}_bucket{{{labels},le="+Inf"}} {n}')
        lines.append(f"{family}_sum{{{labels}}} {n * p95_of(bucket)}")
        lines.append(f"{family}_count{{{labels}}} {n}")
    lines.append("# TYPE llm_requests_finished_total counter")
    lines.append(f'llm_requests_finished_total{{{labels},reason="stop"}} {n - failed * step}')
    lines.append(f'llm_requests_finished_total{{{labels},reason="error"}} {failed * step}')
    return "\n".join(lines) + "\n"


@dataclass
class Stack:
    prom: Prometheus
    pages: dict[str, PageServer]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pages = {pod: PageServer(page(b, r, f, 1)).start() for pod, _d, b, r, f in TARGETS}
    jobs = [
        scrape_job(
            f"pod-{i}",
            f"127.0.0.1:{pages[pod].port}",
            pod_labels(namespace=NAMESPACE, pod=pod, deployment=deployment),
        )
        for i, (pod, deployment, *_rest) in enumerate(TARGETS)
    ]
    prom = Prometheus(tmp_path_factory.mktemp("rollouts-prom"), scrape_configs=jobs)
    try:
        prom.start()
        prom.wait_targets_up(timeout=60)
        for pod, _d, b, r, f in TARGETS:  # a second period of traffic: counters move
            pages[pod].text = page(b, r, f, 2)
        prom.wait_for(
            'count(rate(llm_requests_finished_total{reason="stop"}[5m]) > 0)',
            lambda v: bool(v) and v[0].value == len(TARGETS),
            timeout=30,
        )
        yield Stack(prom, pages)
    finally:
        prom.stop()
        for server in pages.values():
            server.stop()


def argo_query(name: str, **args: str) -> str:
    text = rollouts.argo_queries()[name]
    for key, value in {"namespace": NAMESPACE, **args}.items():
        text = text.replace(f"{{{{args.{key}}}}}", value)
    assert "{{" not in text
    return text


def flagger_query(name: str, target: str, interval: str = "5m") -> str:
    text = rollouts.flagger_queries()[name]
    for var, value in (("namespace", NAMESPACE), ("target", target), ("interval", interval)):
        text = text.replace(f"{{{{ {var} }}}}", value)
    assert "{{" not in text
    return text


def condition(text: str, result: list[float], args: dict[str, str]) -> bool:
    """An Argo condition (expr-lang) as written in the template, for the forms used there:
    `len(result)`, `result[0]`, comparisons, `&&` and `false`."""
    for key, value in args.items():
        text = text.replace(f"{{{{args.{key}}}}}", value)
    assert re.fullmatch(r"[\w\[\]()<>=&. ]+", text), text
    python = text.replace("&&", " and ").replace("false", "False")
    return bool(eval(python, {"__builtins__": {}}, {"len": len, "result": result}))


def verdict(metric: str, result: list[float]) -> str:
    """What Argo makes of one measurement: Successful, Failed or Inconclusive."""
    template = rollouts.analysis_template()
    args = {a["name"]: a["value"] for a in template["spec"]["args"] if "value" in a}
    spec = next(m for m in template["spec"]["metrics"] if m["name"] == metric)
    if condition(spec["successCondition"], result, args):
        return "Successful"
    if condition(spec["failureCondition"], result, args):
        return "Failed"
    return "Inconclusive"


@pytest.mark.prometheus
def test_every_analysis_query_is_valid_promql_and_answers(stack: Stack):
    for name in rollouts.argo_queries():
        found = stack.prom.vector(argo_query(name, baseline="vllm", candidate="vllm-candidate"))
        assert len(found) == 1, (name, found)
    for name in rollouts.flagger_queries():
        found = stack.prom.vector(flagger_query(name, "vllm-candidate"))
        assert len(found) == 1, (name, found)


@pytest.mark.prometheus
def test_a_slower_failing_candidate_is_rolled_back_with_the_values_it_was_given(stack: Stack):
    args = {"baseline": "vllm", "candidate": "vllm-candidate"}
    values = {
        n: [s.value for s in stack.prom.vector(argo_query(n, **args))]
        for n in rollouts.argo_queries()
    }
    expected_ratio = p95_of(CANDIDATE[2]) / p95_of(BASELINE[2])
    assert values["ttft-p95-ratio"][0] == pytest.approx(expected_ratio, rel=1e-9)
    assert values["tpot-p95-ratio"][0] == pytest.approx(expected_ratio, rel=1e-9)
    assert values["error-ratio"][0] == pytest.approx(CANDIDATE[4] / CANDIDATE[3], rel=1e-9)
    assert verdict("ttft-p95-ratio", values["ttft-p95-ratio"]) == "Failed"
    assert verdict("tpot-p95-ratio", values["tpot-p95-ratio"]) == "Failed"
    assert verdict("error-ratio", values["error-ratio"]) == "Failed"
    assert verdict("candidate-requests", values["candidate-requests"]) == "Successful"


@pytest.mark.prometheus
def test_equal_variants_are_promoted(stack: Stack):
    # The baseline against itself: the A/A split the candidate overlay starts as.
    args = {"baseline": "vllm", "candidate": "vllm"}
    for name in rollouts.argo_queries():
        result = [s.value for s in stack.prom.vector(argo_query(name, **args))]
        if name.endswith("-ratio") and name != "error-ratio":
            assert result == [pytest.approx(1.0)]
        assert verdict(name, result) == "Successful", (name, result)


@pytest.mark.prometheus
def test_a_candidate_without_traffic_holds_instead_of_failing(stack: Stack):
    args = {"baseline": "vllm", "candidate": "vllm-candidate-2"}
    for name in rollouts.argo_queries():
        result = [s.value for s in stack.prom.vector(argo_query(name, **args))]
        assert result == [], name
        assert verdict(name, result) == "Inconclusive", name
    # Even if Prometheus answered NaN (no rate yet), no condition holds.
    assert verdict("ttft-p95-ratio", [float("nan")]) == "Inconclusive"
    assert verdict("candidate-requests", [3.0]) == "Inconclusive"


@pytest.mark.prometheus
def test_flagger_templates_read_the_canary_pods_alone(stack: Stack):
    # Only the canary's pod: `chat-primary-...` has the same `deployment` label but another name.
    canary = stack.prom.vector(flagger_query("inferwatch-ttft-p95", "chat"))
    assert [s.value for s in canary] == [pytest.approx(p95_of(FLAGGER_CANARY[2]))]
    errors_ = stack.prom.vector(flagger_query("inferwatch-error-ratio", "chat"))
    assert [s.value for s in errors_] == [pytest.approx(FLAGGER_CANARY[4] / FLAGGER_CANARY[3])]
    # Selecting by the label instead would mix in the primary's faster requests.
    mixed = stack.prom.vector(argo_query("error-ratio", candidate="chat"))
    assert 0 < mixed[0].value < FLAGGER_CANARY[4] / FLAGGER_CANARY[3] - 0.001
    # A target is its own pods' only: `vllm` does not reach `vllm-candidate-...` pods.
    other = stack.prom.vector(flagger_query("inferwatch-tpot-p95", "vllm-candidate"))
    assert [s.value for s in other] == [pytest.approx(p95_of(CANDIDATE[2]))]
    alone = stack.prom.vector(flagger_query("inferwatch-tpot-p95", "vllm"))
    assert [s.value for s in alone] == [pytest.approx(p95_of(BASELINE[2]))]


# --- the docs ---------------------------------------------------------------------------------


def test_the_documented_canary_references_the_rendered_templates():
    text = (ROOT / "docs" / "rollouts.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    canary = next(b for b in blocks if isinstance(b, dict) and b.get("kind") == "Canary")
    names = {m["templateRef"]["name"] for m in canary["spec"]["analysis"]["metrics"]}
    assert names == set(rollouts.flagger_queries())
    rollout = next(b for b in blocks if isinstance(b, dict) and b.get("kind") == "Rollout")
    analysis = rollout["spec"]["strategy"]["canary"]["analysis"]
    assert analysis["templates"] == [{"templateName": rollouts.ANALYSIS_NAME}]
    required = {a["name"] for a in rollouts.analysis_template()["spec"]["args"] if "value" not in a}
    assert required <= {a["name"] for a in analysis["args"]}
    assert manifests.PROMETHEUS_URL in text
