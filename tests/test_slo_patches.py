"""The advisor's patches: HPA (autoscaling/v2) valid on every Kubernetes version the seed names,
the KEDA ScaledObject valid against its CRD, the prometheus-adapter rule the one deploy/ ships,
and JSON patches that apply to a real Deployment wherever the flag is set."""

from __future__ import annotations

import json
import shlex

import jsonpatch
import pytest

from inferwatch.slo import patches
from inferwatch.slo.flags import Current, find_in_container, flag, read_flags
from inferwatch.slo.kube import DeploymentSpec, parse_deployment
from tests.conftest import ROOT
from tests.fixtures.slo.apiserver import recorded
from tests.test_deploy_schemas import K8S_VERSIONS, errors

SCALING = patches.Scaling(
    min_replicas=2,
    max_replicas=8,
    queue_target=1.5,
    scale_up_period=300,
    scale_up_window=60,
    scale_down_period=120,
    scale_down_window=600,
)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_hpa_and_keda_manifests_are_valid(version: str) -> None:
    p = patches.hpa_patch("shop", "chat", SCALING, "http://prometheus.monitoring:9090")
    assert p.hpa is not None and p.keda_scaled_object is not None
    assert errors(p.hpa, version) == []
    assert errors(p.keda_scaled_object, version) == []


def test_hpa_scales_on_the_queue_per_pod_with_the_derived_settings() -> None:
    hpa = patches.hpa_manifest("shop", "chat", SCALING)
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert spec["metrics"] == [
        {
            "pods": {
                "metric": {"name": "llm_requests_waiting"},
                "target": {"averageValue": "1500m", "type": "AverageValue"},
            },
            "type": "Pods",
        }
    ]
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert (up["stabilizationWindowSeconds"], up["policies"][0]["periodSeconds"]) == (60, 300)
    assert down["stabilizationWindowSeconds"] == 600


def test_keda_queries_the_deployments_total_queue() -> None:
    keda = patches.keda_manifest("shop", "chat", SCALING, "http://prom:9090")
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["metadata"] == {
        "serverAddress": "http://prom:9090",
        "query": 'sum(llm_requests_waiting{namespace="shop",deployment="chat"})',
        "threshold": "1.5",
    }
    assert trigger["metricType"] == "AverageValue"
    with pytest.raises(ValueError, match="not valid"):
        patches.queue_query("shop", 'x"}) or vector(1')


def test_the_adapter_rule_is_the_one_deploy_ships() -> None:
    import yaml

    shipped = yaml.safe_load((ROOT / "deploy/prometheus-adapter/helm-values.yaml").read_text())
    ours = patches.adapter_rules()["rules"]
    assert ours and all(rule in shipped["rules"]["custom"] for rule in ours)
    assert ours[0]["name"]["as"] == "llm_requests_waiting"


def test_seed_behaviour_is_the_reference_hpas() -> None:
    import yaml

    reference = yaml.safe_load((ROOT / "deploy/vllm/base/hpa.yaml").read_text())["spec"]
    seed = patches.seed_scaling()
    ours = patches.hpa_manifest("ns", "vllm", seed)["spec"]
    assert ours["behavior"] == reference["behavior"]
    assert ours["metrics"] == reference["metrics"]
    assert (ours["minReplicas"], ours["maxReplicas"]) == (
        reference["minReplicas"],
        reference["maxReplicas"],
    )


@pytest.mark.parametrize(
    ("value", "text"), [(5, "5"), (5.0, "5"), (1.5, "1500m"), (0.5, "500m"), (2.25, "2250m")]
)
def test_quantities(value: float, text: str) -> None:
    assert patches.quantity(value) == text


def _deployment(container: dict) -> tuple[dict, DeploymentSpec]:
    doc = recorded()
    doc["spec"]["template"]["spec"]["containers"][0] = container
    return doc, parse_deployment(doc)


@pytest.mark.parametrize(
    ("container", "name", "value", "expect"),
    [
        # `--flag value`: the value word is replaced.
        ({"name": "vllm", "image": "vllm/vllm-openai", "args": ["--max-num-seqs", "64"]},
         "--max-num-seqs", 128, ["--max-num-seqs", "128"]),
        # `--flag=value`: the word is replaced whole.
        ({"name": "vllm", "image": "vllm/vllm-openai", "args": ["--gpu-memory-utilization=0.8"]},
         "--gpu-memory-utilization", 0.95, ["--gpu-memory-utilization=0.95"]),
        # Not set: appended to the args.
        ({"name": "vllm", "image": "vllm/vllm-openai", "args": ["/models/x"]},
         "--kv-cache-dtype", "fp8", ["/models/x", "--kv-cache-dtype=fp8"]),
        # No args at all: the list is created.
        ({"name": "vllm", "image": "vllm/vllm-openai", "command": ["vllm", "serve", "m"]},
         "--max-num-seqs", 32, ["--max-num-seqs=32"]),
    ],
)  # fmt: skip
def test_json_patches_set_the_flag_where_it_is(
    container: dict, name: str, value: object, expect: list[str]
) -> None:
    doc, d = _deployment(container)
    current = read_flags("vllm", {}, d.container)[name]
    p = patches.flag_patch(current, value, d, "shop", "queued")  # type: ignore[arg-type]
    patched = jsonpatch.apply_patch(doc, p.json_patch)
    assert patched["spec"]["template"]["spec"]["containers"][0]["args"] == expect
    words = shlex.split(p.kubectl["json-patch"])
    assert words[:6] == ["kubectl", "-n", "shop", "patch", "deployment", "queued"]
    assert json.loads(words[-1]) == p.json_patch


def test_tgi_flags_set_by_environment_are_patched_there() -> None:
    container = {
        "name": "tgi",
        "image": "ghcr.io/huggingface/text-generation-inference:3.3",
        "env": [{"name": "MODEL_ID", "value": "m"}, {"name": "MAX_WAITING_TOKENS", "value": "20"}],
    }
    doc, d = _deployment(container)
    current = read_flags("tgi", {}, d.container)["--max-waiting-tokens"]
    patched = jsonpatch.apply_patch(
        doc, patches.flag_patch(current, 10, d, "shop", "queued").json_patch
    )
    env = patched["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1] == {"name": "MAX_WAITING_TOKENS", "value": "10"}


def test_without_the_deployment_the_patch_appends_and_says_so() -> None:
    current = Current(flag("vllm", "--max-num-seqs"), None, "unknown")
    p = patches.flag_patch(current, 128, None, None, None)
    assert p.json_patch == [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/args/-",
            "value": "--max-num-seqs=128",
        }
    ]
    assert p.kubectl == {}
    assert any("could not be read" in n for n in p.notes)
    assert any("--namespace and --deployment" in n for n in p.notes)
    tgi = patches.flag_patch(
        Current(flag("tgi", "--max-waiting-tokens"), None, "unknown"), 10, None, "a", "b"
    )
    assert any("TGI refuses a flag given twice" in n for n in tgi.notes)


def test_the_engine_container_is_found_beside_the_sidecar() -> None:
    doc = recorded()
    containers = doc["spec"]["template"]["spec"]["containers"]
    doc["spec"]["template"]["spec"]["containers"] = [containers[1], containers[0]]
    d = parse_deployment(doc)
    assert (d.container_index, d.container_name, d.engine) == (1, "vllm", "vllm")
    assert find_in_container(d.container, flag("vllm", "--block-size")).value == "16"  # type: ignore[union-attr]


def test_a_replicas_patch_and_scale_command() -> None:
    p = patches.replicas_patch("shop", "queued", 6)
    assert p.json_patch == [{"op": "replace", "path": "/spec/replicas", "value": 6}]
    assert p.kubectl["scale"] == "kubectl -n shop scale deployment queued --replicas=6"
    assert jsonpatch.apply_patch(recorded(), p.json_patch)["spec"]["replicas"] == 6
