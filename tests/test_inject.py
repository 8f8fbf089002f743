"""`inferwatch inject`: golden outputs for every framework and the seed's own Deployments,
idempotency, everything else preserved (field order and values), valid output, and a clear
message naming the document for every input it cannot handle."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from inferwatch.cli import app
from inferwatch.deploy import engines, injector, sidecar
from tests.conftest import FIXTURES
from tests.test_deploy_schemas import K8S_VERSIONS, errors

INJECT = FIXTURES / "inject"
INPUTS = sorted(p.name.removesuffix(".input.yaml") for p in INJECT.glob("*.input.yaml"))
# The seed's own manifests are not valid objects (no selector, no labels): checked elsewhere.
NOT_VALID_INPUTS = {"seed-tgi"}
UPDATE = os.environ.get("INFERWATCH_UPDATE_GOLDEN") == "1"


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["inject", *args], input=stdin)


def docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_there_is_an_input_for_every_framework_and_the_seeds_deployments():
    assert {
        "vllm",
        "tgi",
        "sglang",
        "trtllm",
        "triton",
        "llamacpp",
        "ollama",
        "kserve",
        "seed-vllm",
        "seed-tgi",
    } <= set(INPUTS)


@pytest.mark.parametrize("name", INPUTS)
def test_golden(name):
    result = run("-f", str(INJECT / f"{name}.input.yaml"))
    assert result.exit_code == 0, result.stderr
    golden = INJECT / f"{name}.golden.yaml"
    if UPDATE:
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text(), (
        f"{golden.name} differs; if the change is intended, rerun with "
        f"INFERWATCH_UPDATE_GOLDEN=1 and review the diff"
    )
    assert "injected 1, already injected 0" in result.stderr


@pytest.mark.parametrize("name", INPUTS)
def test_injecting_twice_changes_nothing(name):
    golden = (INJECT / f"{name}.golden.yaml").read_text()
    result = run("-f", "-", stdin=golden)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == golden
    assert "injected 0, already injected 1" in result.stderr


def _strip(node: Any) -> Any:
    """The object without anything the injector adds; empty maps and lists dropped."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key.startswith("inferwatch.io/"):
                continue
            value = _strip(value)
            if key == "containers" and isinstance(value, list):
                value = [c for c in value if c.get("name") != sidecar.CONTAINER_NAME]
            if value in ({}, []):
                continue
            out[key] = value
        return out
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


@pytest.mark.parametrize("name", INPUTS)
def test_everything_else_is_preserved_in_order(name):
    before = docs((INJECT / f"{name}.input.yaml").read_text())
    after = docs((INJECT / f"{name}.golden.yaml").read_text())
    assert len(after) == len(before)
    for b, a in zip(before, after, strict=True):
        # json.dumps keeps key order: equal strings mean the same fields, order and values.
        assert json.dumps(_strip(a)) == json.dumps(_strip(b))


@pytest.mark.parametrize("name", sorted(set(INPUTS) - NOT_VALID_INPUTS))
def test_the_output_validates_for_kubernetes_1_25_to_1_32(name):
    for doc in docs((INJECT / f"{name}.golden.yaml").read_text()):
        items = doc["items"] if doc["kind"] == "List" else [doc]
        for item in items:
            for version in K8S_VERSIONS:
                assert errors(item, version) == []


def _pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kind = doc["kind"]
    if kind == "List":
        return [t for item in doc["items"] for t in _pod_templates(item)]
    if kind == "Pod":
        return [doc]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]]
    if kind == "InferenceService":
        p = doc["spec"]["predictor"]
        return [{"metadata": {"labels": p["labels"], "annotations": p["annotations"]}, "spec": p}]
    if "template" in doc.get("spec", {}):
        return [doc["spec"]["template"]]
    return []


@pytest.mark.parametrize("name", INPUTS)
def test_the_sidecar_follows_the_contract(name):
    templates = [
        t for d in docs((INJECT / f"{name}.golden.yaml").read_text()) for t in _pod_templates(d)
    ]
    assert len(templates) == 1
    template = templates[0]
    side = next(c for c in template["spec"]["containers"] if c["name"] == "inferwatch")
    assert side["image"] == sidecar.IMAGE
    assert side["ports"] == [{"name": "iw-metrics", "containerPort": 9450, "protocol": "TCP"}]
    assert [e["name"] for e in side["env"]] == ["POD_NAME", "POD_NAMESPACE"]
    assert side["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert side["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert side["readinessProbe"]["httpGet"]["path"] == "/readyz"
    context = side["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert set(side["resources"]) == {"requests", "limits"}
    assert template["metadata"]["annotations"][sidecar.ANNOTATION_INJECTED]
    assert template["metadata"]["labels"][sidecar.LABEL_DEPLOYMENT]
    assert side["args"][:2] in (["exporter", "--upstream"], ["exporter", "--proxy"])


# Expected (engine, port, model) and whether GPU stats are read, per golden.
EXPECTED = {
    "vllm": ("vllm", 8080, None, True),
    "tgi": ("tgi", 3000, "mistralai/Mistral-7B-Instruct-v0.3", True),
    "sglang": ("sglang", 31000, None, True),
    "trtllm": ("trtllm", 8002, None, True),
    "triton": ("triton", 9000, None, True),
    "llamacpp": ("llamacpp", 8081, "phi-3-mini-q4", False),
    "ollama": ("ollama", 11434, None, True),
    "kserve": ("vllm", 8080, None, True),
    "cronjob": ("vllm", 8000, None, True),
    "seed-vllm": ("vllm", 8000, None, True),
    "seed-tgi": ("tgi", 80, "mistralai/Mistral-7B-Instruct-v0.2", True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_engine_its_metrics_port_and_model_are_detected(name):
    engine, port, model, gpu = EXPECTED[name]
    template = next(
        t for d in docs((INJECT / f"{name}.golden.yaml").read_text()) for t in _pod_templates(d)
    )
    side = next(c for c in template["spec"]["containers"] if c["name"] == "inferwatch")
    assert side["args"] == sidecar.args(
        engine, port, proxy=engine == "ollama", model=model, dcgm=sidecar.DCGM_URL if gpu else None
    )
    assert template["metadata"]["labels"][sidecar.LABEL_ENGINE] == engine


def test_workload_label_comes_from_the_owning_workload():
    template = next(
        t for d in docs((INJECT / "vllm.golden.yaml").read_text()) for t in _pod_templates(d)
    )
    assert template["metadata"]["labels"][sidecar.LABEL_DEPLOYMENT] == "llama-chat"


# --- detection, table-driven ------------------------------------------------------------------


@pytest.mark.parametrize(
    "container, engine, port, model",
    [
        ({"image": "vllm/vllm-openai:v0.9.0"}, "vllm", 8000, None),
        (
            {"image": "my/server:1", "command": ["vllm", "serve", "m", "--port", "9000"]},
            "vllm",
            9000,
            None,
        ),
        ({"image": "nvcr.io/nvidia/tritonserver:24.08-vllm-python-py3"}, "triton", 8002, None),
        (
            {
                "image": "nvcr.io/nvidia/tritonserver:24.08-trtllm-python-py3",
                "ports": [{"name": "metrics", "containerPort": 9100}],
            },
            "trtllm",
            9100,
            None,
        ),
        (
            {"image": "x/y:1", "command": ["/bin/sh", "-c", "text-generation-launcher --port 81"]},
            "tgi",
            81,
            None,
        ),
        (
            {
                "image": "ghcr.io/huggingface/text-generation-inference:3.0.0",
                "args": ["--model-id", "/data/Llama-3-8B"],
            },
            "tgi",
            80,
            "Llama-3-8B",
        ),
        (
            {
                "image": "ghcr.io/ggml-org/llama.cpp:server-cuda",
                "env": [
                    {"name": "LLAMA_ARG_PORT", "value": "9090"},
                    {"name": "LLAMA_ARG_ALIAS", "value": "qwen"},
                    {"name": "LLAMA_ARG_ENDPOINT_METRICS", "value": "1"},
                ],
            },
            "llamacpp",
            9090,
            "qwen",
        ),
        (
            {
                "image": "ollama/ollama:0.6.8",
                "env": [{"name": "OLLAMA_HOST", "value": "http://0.0.0.0:11500"}],
            },
            "ollama",
            11500,
            None,
        ),
        (
            {"image": "lmsysorg/sglang:latest", "args": ["--port=30001", "--enable-metrics"]},
            "sglang",
            30001,
            None,
        ),
    ],
)
def test_detection(container, engine, port, model):
    found = engines.identify(container)
    assert found is not None and found.name == engine
    detected = engines.detect(found, container)
    assert (detected.port, detected.model, detected.warnings) == (port, model, ())


def test_every_engine_of_the_schema_can_be_detected_and_injected():
    from inferwatch.schema import ENGINES

    assert set(engines.ENGINE_TABLE) == set(ENGINES)


@pytest.mark.parametrize(
    "container",
    [
        {"image": "nginx:1.27"},
        {"image": "python:3.11-slim", "command": ["python", "serve.py", "--model", "vllm-ish"]},
        {"image": "ghcr.io/inferwatch/inferwatch:0.1.0", "args": ["exporter"]},
    ],
)
def test_things_that_are_not_engines_are_not_detected(container):
    assert engines.identify(container) is None


def test_engines_without_metrics_switched_on_get_a_note():
    sglang = {"name": "s", "image": "lmsysorg/sglang:v0.4.6", "args": ["--port", "30000"]}
    assert "--enable-metrics" in engines.detect(engines.get("sglang"), sglang).warnings[0]
    llama = {"name": "l", "image": "ghcr.io/ggml-org/llama.cpp:server", "args": ["-m", "x"]}
    assert "--metrics" in engines.detect(engines.get("llamacpp"), llama).warnings[0]


# --- the CLI's options and every input it cannot handle ---------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: x}}
  template:
    metadata:
      labels: {{app: x}}
    spec:
      containers:
{containers}
"""


def deployment(*containers: str, name: str = "web") -> str:
    return DEPLOYMENT.format(name=name, containers="\n".join(containers))


NGINX = "      - {name: web, image: 'nginx:1.27', ports: [{containerPort: 8080}]}"
VLLM = (
    "      - {name: vllm, image: 'vllm/vllm-openai:v0.9.0', "
    "resources: {limits: {nvidia.com/gpu: 1}}}"
)
TGI = "      - {name: tgi, image: 'ghcr.io/huggingface/text-generation-inference:3.0.0'}"


def test_engine_override_injects_a_container_inferwatch_does_not_recognise():
    result = run("-f", "-", "--engine", "vllm", stdin=deployment(NGINX))
    assert result.exit_code == 0, result.stderr
    side = docs(result.stdout)[0]["spec"]["template"]["spec"]["containers"][1]
    assert side["args"][:5] == [
        "exporter",
        "--upstream",
        "http://127.0.0.1:8080",
        "--engine",
        "vllm",
    ]


def test_an_unrecognised_container_gets_a_message_naming_the_document():
    result = run("-f", "-", stdin=deployment(NGINX))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "standard input: document 1 (Deployment web): no inference engine recognised in "
        "containers web (nginx:1.27); pass --engine"
    ) in result.stderr


def test_two_engine_containers_need_container():
    result = run("-f", "-", stdin=deployment(VLLM, TGI))
    assert result.exit_code == 1
    assert (
        "several containers look like engines: vllm (vllm), tgi (tgi); pass --container"
        in result.stderr
    )
    result = run("-f", "-", "--container", "tgi", stdin=deployment(VLLM, TGI))
    assert result.exit_code == 0, result.stderr
    side = docs(result.stdout)[0]["spec"]["template"]["spec"]["containers"][2]
    assert "tgi" in side["args"] and "--dcgm" not in side["args"]
    result = run("-f", "-", "--container", "nope", stdin=deployment(VLLM, TGI))
    assert "no container named 'nope' (containers: vllm, tgi)" in result.stderr


def test_dcgm_options():
    result = run("-f", "-", "--no-dcgm", stdin=deployment(VLLM))
    assert (
        "--dcgm" not in docs(result.stdout)[0]["spec"]["template"]["spec"]["containers"][1]["args"]
    )
    result = run(
        "-f", "-", "--dcgm", "http://dcgm.local:9400", "--image", "reg/iw:1", stdin=deployment(VLLM)
    )
    side = docs(result.stdout)[0]["spec"]["template"]["spec"]["containers"][1]
    assert side["args"][-2:] == ["--dcgm", "http://dcgm.local:9400"]
    assert side["image"] == "reg/iw:1"


def test_a_port_clash_with_the_sidecar_is_refused():
    clash = "      - {name: x, image: 'redis:7', ports: [{containerPort: 9450}]}"
    result = run("-f", "-", stdin=deployment(VLLM, clash))
    assert result.exit_code == 1
    assert "container 'x' already uses port 9450" in result.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind: [unclosed\n", "standard input: not valid YAML at line"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n- a\n- b\n",
            "document 2: not a Kubernetes object (a list)",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n",
            "document 1 (Deployment d): no pod template",
        ),
        ("metadata: {name: nokind}\n", "document 1 (nokind): no kind"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
            "document 1 (Pod p): the pod spec has no containers",
        ),
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: i}\n"
            "spec: {predictor: {model: {modelFormat: {name: sklearn}}}}\n",
            "model format 'sklearn' is not an LLM engine",
        ),
    ],
)
def test_inputs_it_cannot_handle_say_where_and_why(text, message):
    result = run("-f", "-", stdin=text)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_one_bad_document_stops_the_whole_file_so_nothing_half_injected_is_applied():
    text = deployment(VLLM, name="good") + "---\n" + deployment(NGINX, name="bad")
    result = run("-f", "-", stdin=text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "document 2 (Deployment bad)" in result.stderr


def test_a_file_with_no_workload_is_an_error_and_a_missing_file_too(tmp_path):
    result = run("-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert result.exit_code == 1
    assert "no workload with a pod template" in result.stderr
    result = run("-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and "nope.yaml" in result.stderr
    result = run("-f", "-", "--engine", "vlm", stdin=deployment(VLLM))
    assert result.exit_code == 2
    assert "unknown engine 'vlm'" in result.stderr


def test_ollama_and_sglang_notes_reach_the_user():
    result = run("-f", str(INJECT / "ollama.input.yaml"))
    assert "point the Service's targetPort at iw-metrics" in result.stderr
    no_metrics = "      - {name: s, image: 'lmsysorg/sglang:v0.4.6', args: [--port, '30000']}"
    result = run("-f", "-", stdin=deployment(no_metrics))
    assert result.exit_code == 0
    assert "sglang serves /metrics only when started with --enable-metrics" in result.stderr


def test_a_pod_of_a_replicaset_is_labelled_with_its_deployment():
    pod = {
        "metadata": {
            "generateName": "chat-7d9f8c6b5-",
            "labels": {"pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "chat-7d9f8c6b5", "controller": True}
            ],
        }
    }
    assert injector.pod_workload(pod) == "chat"
    job_pod = {"metadata": {"name": "x", "ownerReferences": [{"kind": "Job", "name": "eval-1"}]}}
    assert injector.pod_workload(job_pod) == "eval-1"
    assert injector.pod_workload({"metadata": {"generateName": "solo-"}}) == "solo"


def test_a_workload_name_that_is_not_a_valid_label_value_is_made_one():
    assert injector.label_value("a" * 80) == "a" * 63
    assert injector.label_value("weird name/with:chars") == "weird-name-with-chars"
    assert injector.label_value("---") == ""


def test_the_injected_marker_is_what_makes_it_idempotent():
    # A pod template that already carries the sidecar container (no annotation) is left alone.
    old = "      - {name: inferwatch, image: 'ghcr.io/inferwatch/inferwatch:0.0.9'}"
    text = deployment(VLLM, old)
    result = run("-f", "-", stdin=text)
    assert result.exit_code == 0
    assert docs(result.stdout) == docs(text)


# --- anything at all in, never a crash -----------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12))
_keys = st.sampled_from(
    [
        "kind",
        "metadata",
        "spec",
        "template",
        "containers",
        "initContainers",
        "name",
        "image",
        "command",
        "args",
        "env",
        "ports",
        "containerPort",
        "value",
        "labels",
        "annotations",
        "resources",
        "limits",
        "nvidia.com/gpu",
        "items",
        "predictor",
        "model",
        "modelFormat",
        "jobTemplate",
        "ownerReferences",
    ]
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)
_kinds = st.sampled_from(
    [
        "Deployment",
        "StatefulSet",
        "Pod",
        "Job",
        "CronJob",
        "List",
        "InferenceService",
        "DaemonSet",
        "ConfigMap",
        7,
        None,
    ]
)
_images = st.sampled_from(["vllm/vllm-openai:v0.9.0", "ollama/ollama:0.6.8", "nginx", 3])


@st.composite
def _documents(draw: st.DrawFn) -> Any:
    container = draw(st.dictionaries(_keys, _values, max_size=5))
    container["image"] = draw(_images)
    spec = draw(st.dictionaries(_keys, _values, max_size=4))
    spec["containers"] = draw(st.one_of(st.just([container]), _values))
    template = {"metadata": draw(_values), "spec": spec}
    doc = draw(st.dictionaries(_keys, _values, max_size=4))
    doc["kind"] = draw(_kinds)
    doc["spec"] = draw(
        st.one_of(
            st.just({"template": template}),
            st.just({"predictor": {"model": container}}),
            st.just(spec),
            _values,
        )
    )
    doc["items"] = draw(st.one_of(st.just([dict(doc)]), _values))
    return draw(st.one_of(st.just(doc), _values))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
@example({"kind": "List", "items": 1})
def test_any_document_is_injected_or_refused_with_a_reason_never_a_crash(doc):
    try:
        injector.inject_document(doc)
    except injector.InjectError as exc:
        assert str(exc).startswith("document 1")
