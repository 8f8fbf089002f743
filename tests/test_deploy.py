"""Reference deployments: the committed tree is what `inferwatch deploy render` writes, every
kustomization builds with a real `kubectl kustomize`, every object validates for Kubernetes
1.25-1.32 (CRDs against their published schemas), and the objects say what they must."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from inferwatch.cli import app
from inferwatch.deploy import injector, manifests, render, sidecar
from inferwatch.deploy.frameworks import FRAMEWORKS, MODEL_PVC, SERVED_MODEL
from inferwatch.schema import family
from tests.conftest import ROOT, require_tool
from tests.test_deploy_schemas import K8S_VERSIONS, errors

DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = sorted(
    p.parent.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("kustomization.yaml")
)
# Where each framework's sidecar must read metrics: Triton serves them on its metrics port.
METRICS_PORT = {
    "vllm": 8000,
    "tgi": 8080,
    "sglang": 30000,
    "trtllm": 8002,
    "triton": 8002,
    "llamacpp": 8080,
    "ollama": 11434,
}
# The model the sidecar names for engines whose metrics do not say it.
MODEL = {"tgi": "Mistral-7B-Instruct-v0.2", "llamacpp": SERVED_MODEL}


def kubectl() -> str:
    """scripts/setup.sh puts kubectl (v1.32, kustomize v5) in .venv/bin when none is on PATH."""
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.exists() else require_tool("kubectl")


@functools.cache
def build(folder: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / folder)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize deploy/{folder}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "InferenceService":
        return obj["spec"]["predictor"]["containers"]
    return obj["spec"]["template"]["spec"]["containers"]


# --- generated and fresh ---------------------------------------------------------------------


def test_the_committed_tree_is_exactly_what_render_writes():
    wanted = render.files()
    stale = {
        rel
        for rel, text in wanted.items()
        if not (DEPLOY / rel).exists() or (DEPLOY / rel).read_text() != text
    }
    assert not stale, f"run `inferwatch deploy render --framework all --out deploy`: {stale}"
    extra = {
        p.relative_to(DEPLOY).as_posix()
        for folder in render.generated_dirs()
        for p in (DEPLOY / folder).rglob("*.yaml")
    }
    assert extra - set(wanted) == set(), "generated folders hold files render does not write"


def test_render_out_writes_the_same_tree_and_removes_stale_files(tmp_path):
    (tmp_path / "vllm" / "base").mkdir(parents=True)
    (tmp_path / "vllm" / "base" / "old.yaml").write_text("kind: Stale\n")
    result = CliRunner().invoke(
        app, ["deploy", "render", "--framework", "vllm", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "vllm" / "base" / "old.yaml").exists()
    for rel, text in render.files(["vllm"]).items():
        assert (tmp_path / rel).read_text() == text


def test_render_without_out_prints_the_base_as_one_stream():
    result = CliRunner().invoke(app, ["deploy", "render", "--framework", "tgi"])
    assert result.exit_code == 0
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in docs] == [
        "Deployment",
        "Service",
        "PodMonitor",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]


def test_render_refuses_an_unknown_framework():
    result = CliRunner().invoke(app, ["deploy", "render", "--framework", "vlm"])
    assert result.exit_code == 2
    assert "--framework 'vlm'" in result.stderr and "vllm" in result.stderr


def test_every_framework_has_a_base_and_its_overlays():
    for name, fw in FRAMEWORKS.items():
        assert f"{name}/base" in KUSTOMIZATIONS
        for overlay in fw.overlays:
            assert f"{name}/{overlay}" in KUSTOMIZATIONS
    assert set(FRAMEWORKS) == {"vllm", "tgi", "trtllm", "triton", "llamacpp", "ollama", "sglang"}
    for shared in render.SHARED_DIRS:
        assert shared in KUSTOMIZATIONS


# --- builds and validates ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_kustomization_builds_and_validates_for_kubernetes_1_25_to_1_32(folder):
    docs = build(folder)
    assert docs, f"deploy/{folder} builds to nothing"
    found = [e for doc in docs for version in K8S_VERSIONS for e in errors(doc, version)]
    assert found == []


def test_no_image_is_latest_or_untagged():
    for folder in KUSTOMIZATIONS:
        for doc in build(folder):
            if doc["kind"] not in ("Deployment", "InferenceService"):
                continue
            for c in containers(doc):
                image = c["image"]
                tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
                assert tag and tag != "latest", f"{folder}: {c['name']} image {image}"


# --- what each base says -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_the_deployment_runs_the_engine_as_the_seed_recommends(name):
    fw = FRAMEWORKS[name]
    deploy = one(build(f"{name}/base"), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    engine = next(c for c in pod["containers"] if c["name"] == name)
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == MODEL_PVC
    mounts = {m["mountPath"] for m in engine["volumeMounts"]}
    assert {"/dev/shm", "/models"} <= mounts
    # The start-up probe is the warm-up request: readiness starts only once it has answered.
    warmup = " ".join(engine["startupProbe"]["exec"]["command"])
    assert str(fw.port) in warmup or fw.engine == "ollama"
    assert (
        engine["startupProbe"]["failureThreshold"] * engine["startupProbe"]["periodSeconds"] >= 1800
    ), "model loading gets at least 30 minutes"
    for probe in ("readinessProbe", "livenessProbe"):
        if fw.health_path:
            assert engine[probe]["httpGet"] == {"path": fw.health_path, "port": "http"}
        else:
            assert engine[probe]["exec"]["command"] == list(fw.health_exec)


def test_vllm_carries_the_seeds_recommended_engine_flags():
    args = one(build("vllm/base"), "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert flags["--gpu-memory-utilization"] == "0.9"
    assert flags["--max-num-seqs"] == "256"
    assert flags["--max-num-batched-tokens"] == "8192"
    assert flags["--block-size"] == "16"
    assert "--swap-space" not in args


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_the_sidecar_is_the_contracts_and_reads_the_engines_metrics_port(name):
    fw = FRAMEWORKS[name]
    pod = one(build(f"{name}/base"), "Deployment")["spec"]["template"]
    side = next(c for c in pod["spec"]["containers"] if c["name"] == sidecar.CONTAINER_NAME)
    assert side == sidecar.container(
        fw.engine,
        METRICS_PORT[name],
        proxy=fw.engine == "ollama",
        model=MODEL.get(name),
        dcgm=sidecar.DCGM_URL,
    )
    engine_ports = {
        p["containerPort"]
        for c in pod["spec"]["containers"]
        for p in c.get("ports", [])
        if c["name"] == name
    }
    assert METRICS_PORT[name] in engine_ports
    assert pod["metadata"]["labels"][sidecar.LABEL_DEPLOYMENT] == name
    assert pod["metadata"]["labels"][sidecar.LABEL_ENGINE] == fw.engine
    assert sidecar.ANNOTATION_INJECTED in pod["metadata"]["annotations"]


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_service_podmonitor_pdb_and_hpa_point_at_the_pods(name):
    docs = build(f"{name}/base")
    deploy, svc = one(docs, "Deployment"), one(docs, "Service")
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    named_ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= named_ports
    if name == "ollama":  # the API goes through the sidecar's proxy
        assert svc["spec"]["ports"][0]["targetPort"] == sidecar.PORT_NAME
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == sidecar.PORT_NAME
    assert endpoint["relabelings"][0]["targetLabel"] == "deployment"
    assert endpoint["relabelings"][0]["sourceLabels"] == [
        "__meta_kubernetes_pod_label_inferwatch_io_deployment"
    ]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == FRAMEWORKS[name].scale_metric
    assert metric["target"]["averageValue"] == str(FRAMEWORKS[name].scale_target)


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_the_scaling_signal_is_one_the_engines_sidecar_reports(name):
    from inferwatch.exporters import registry

    fw = FRAMEWORKS[name]
    adapter = registry.get(fw.engine)
    assert adapter.concept(fw.scale_metric) is not None
    if fw.scale_metric != "llm_requests_waiting":  # only where the queue is not reported
        assert adapter.concept("llm_requests_waiting") is None


def test_the_adapter_rule_serves_the_metric_the_hpa_asks_for():
    config_map = one(build("prometheus-adapter"), "ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    served = {r["name"]["as"] for r in rules}
    assert served == {fw.scale_metric for fw in FRAMEWORKS.values()}
    assert family("llm_requests_waiting").name in served
    assert rules[0]["resources"]["overrides"]["pod"] == {"resource": "pod"}
    helm = yaml.safe_load((DEPLOY / "prometheus-adapter" / "helm-values.yaml").read_text())
    assert helm["rules"]["custom"] == rules


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_keda_replaces_the_hpa_with_a_prometheus_trigger_on_the_same_queue(name):
    docs = build(f"{name}/keda")
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    scaled = one(docs, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    metric = FRAMEWORKS[name].scale_metric
    assert trigger["metadata"]["query"] == (
        f'sum({metric}{{namespace="{manifests.KEDA_NAMESPACE}",deployment="{name}"}})'
    )
    assert trigger["metadata"]["threshold"] == str(FRAMEWORKS[name].scale_target)
    assert {d["metadata"].get("namespace") for d in docs} == {manifests.KEDA_NAMESPACE}


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_ack_shares_a_gpu_by_memory_instead_of_taking_a_whole_one(name):
    deploy = one(build(f"{name}/ack-gpu-share"), "Deployment")
    engine = next(c for c in containers(deploy) if c["name"] == name)
    for kind in ("limits", "requests"):
        assert "nvidia.com/gpu" not in engine["resources"][kind]
        assert engine["resources"][kind]["aliyun.com/gpu-mem"] == manifests.ACK_GPU_MEM_GIB
    assert deploy["spec"]["template"]["spec"]["nodeSelector"] == {manifests.ACK_NODE_LABEL: "cgpu"}


def test_kserve_runs_vllm_with_the_sidecar_and_scales_on_the_queue():
    docs = build("vllm/kserve")
    isvc = one(docs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    names = [c["name"] for c in predictor["containers"]]
    assert names == [injector.KSERVE_CONTAINER, sidecar.CONTAINER_NAME]
    side = predictor["containers"][1]
    assert "http://127.0.0.1:8080" in side["args"]
    assert predictor["labels"][sidecar.LABEL_DEPLOYMENT] == "vllm"
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "vllm-predictor"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_injecting_a_reference_deployment_changes_nothing(name):
    deploy = one(build(f"{name}/base"), "Deployment")
    before = yaml.safe_dump(deploy)
    result = injector.inject_document(deploy)
    assert (result.injected, result.already) == (0, 1)
    assert yaml.safe_dump(deploy) == before


# --- shared parts ---------------------------------------------------------------------------


def test_dcgm_service_is_node_local_in_front_of_the_gpu_operators_exporter():
    svc = one(build("gpu"), "Service")
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert svc["spec"]["selector"] == {"app": "nvidia-dcgm-exporter"}
    assert svc["metadata"]["namespace"] == "gpu-operator"
    url = (
        f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:"
        f"{svc['spec']['ports'][0]['port']}"
    )
    assert url == sidecar.DCGM_URL


def test_the_webhook_configuration_never_blocks_pods_and_skips_system_namespaces():
    docs = build("webhook")
    mwc = one(docs, "MutatingWebhookConfiguration")
    svc, cert = one(docs, "Service"), one(docs, "Certificate")
    assert len(mwc["webhooks"]) == 2
    for hook in mwc["webhooks"]:
        assert hook["failurePolicy"] == "Ignore"
        assert hook["timeoutSeconds"] == 5
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"][0]["operations"] == ["CREATE"]
        assert hook["rules"][0]["resources"] == ["pods"]
        excluded = [
            e
            for e in hook["namespaceSelector"]["matchExpressions"]
            if e["key"] == "kubernetes.io/metadata.name"
        ]
        assert excluded[0]["operator"] == "NotIn"
        assert "kube-system" in excluded[0]["values"]
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["path"]) == (
            svc["metadata"]["name"],
            svc["metadata"]["namespace"],
            "/mutate",
        )
    by_pod, by_namespace = mwc["webhooks"]
    assert by_pod["objectSelector"] == {"matchLabels": {sidecar.LABEL_INJECT: "true"}}
    assert by_namespace["namespaceSelector"]["matchLabels"] == {sidecar.LABEL_INJECT: "true"}
    assert by_namespace["objectSelector"]["matchExpressions"][0]["operator"] == "DoesNotExist"
    assert (
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    )
    assert (
        f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc" in cert["spec"]["dnsNames"]
    )


def test_the_webhook_runs_twice_with_its_certificate_and_a_pdb():
    docs = build("webhook")
    deploy, cert = one(docs, "Deployment"), one(docs, "Certificate")
    assert deploy["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pod = deploy["spec"]["template"]["spec"]
    secret = next(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
    assert secret == cert["spec"]["secretName"]
    args = pod["containers"][0]["args"]
    assert args[:2] == ["webhook", "serve"]
    mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
    assert args[args.index("--tls-cert") + 1].startswith(mount + "/")
    context = pod["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]


def test_the_cluster_wide_podmonitor_leaves_reference_pods_to_their_own():
    monitor = one(build("monitoring"), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    expressions = {e["key"]: e for e in monitor["spec"]["selector"]["matchExpressions"]}
    assert expressions[sidecar.LABEL_ENGINE]["operator"] == "Exists"
    assert expressions["app.kubernetes.io/part-of"] == {
        "key": "app.kubernetes.io/part-of",
        "operator": "NotIn",
        "values": [manifests.PART_OF],
    }
    base_pod = one(build("vllm/base"), "Deployment")["spec"]["template"]["metadata"]
    assert base_pod["labels"]["app.kubernetes.io/part-of"] == manifests.PART_OF


# --- the sidecar image ----------------------------------------------------------------------


def test_the_dockerfile_builds_the_sidecar_image_as_the_manifests_expect():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "pip install" in text and ".[exporter]" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] == f"{sidecar.RUN_AS}:{sidecar.RUN_AS}"
    assert re.search(r'^ENTRYPOINT \["inferwatch"\]', text, re.MULTILINE)
    assert f"EXPOSE {sidecar.PORT}" in text


def test_monitoring_ships_the_generated_rules_and_dashboards_verbatim():
    sources = render.consumed_sources()
    assert {rel.split("/")[0] for rel in sources} == {"rules", "dashboards"}
    for rel, path in sources.items():
        assert (DEPLOY / "monitoring" / rel).read_bytes() == path.read_bytes()
    docs = build("monitoring")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rules) == sum(rel.startswith("rules/") for rel in sources)
    dashboards = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(dashboards) == sum(rel.startswith("dashboards/") for rel in sources)
    assert {d["metadata"]["namespace"] for d in docs} == {render.MONITORING_NAMESPACE}


def _parses(args: list[str]) -> None:
    """The real CLI accepts these arguments (parsed, not run)."""
    import typer

    group = typer.main.get_command(app)
    name, *rest = args
    command = group.get_command(None, name)  # type: ignore[arg-type]
    if rest and rest[0] == "serve":  # webhook serve
        command = command.get_command(None, "serve")  # type: ignore[union-attr]
        rest = rest[1:]
    command.make_context(name, list(rest))  # raises on an unknown or malformed option


@pytest.mark.parametrize(
    "folder",
    [
        "vllm/base",
        "tgi/base",
        "sglang/base",
        "trtllm/base",
        "triton/base",
        "llamacpp/base",
        "ollama/base",
        "vllm/kserve",
        "webhook",
    ],
)
def test_the_rendered_command_lines_are_accepted_by_the_real_cli(folder):
    from inferwatch.exporters import registry

    for doc in build(folder):
        if doc["kind"] not in ("Deployment", "InferenceService"):
            continue
        for c in containers(doc):
            if c["image"] != sidecar.IMAGE:
                continue
            _parses(c["args"])
            if "--engine" in c["args"]:
                registry.get(c["args"][c["args"].index("--engine") + 1])


def test_the_kubernetes_validate_command_line_accepts_a_built_base(tmp_path):
    path = tmp_path / "vllm.yaml"
    path.write_text(yaml.safe_dump_all(build("vllm/base")))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    for version in (K8S_VERSIONS[0], K8S_VERSIONS[-1]):
        out = subprocess.run(
            [str(tool), "--strict", "-k", version, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("INFO") == 4  # the built-in kinds; PodMonitor is a CRD
