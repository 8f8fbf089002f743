"""Schema validation of manifests: Kubernetes kinds with kubernetes-validate --strict for every
version the seed names, custom resources against their published CRD schemas.

`errors(obj, version)` is what the other deploy/inject/webhook tests use; the tests here prove
the validator itself rejects what it must (a validator that passes everything proves nothing).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from tests.conftest import FIXTURES

# "适用版本: v1.25 - v1.32" (the seed).
K8S_VERSIONS = tuple(f"1.{minor}.0" for minor in range(25, 33))
CRDS = FIXTURES / "crds"
CRD_FILES = {
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "Certificate": "cert-manager.io_certificates.yaml",
    "VirtualService": "networking.istio.io_virtualservices.yaml",
    "ApisixRoute": "apisix.apache.org_apisixroutes.yaml",
    "AnalysisTemplate": "argoproj.io_analysistemplates.yaml",
    "MetricTemplate": "flagger.app_metrictemplates.yaml",
}
KSERVE_FILE = "serving.kserve.io_inferenceservices.yaml"
K8S_ID = "https://kubernetes.io/api/_definitions.json"
META = f"{K8S_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Keys of OpenAPI v3 schemas that constrain nothing JSON Schema checks (or that are CEL).
_DROP = frozenset(
    {
        "description",
        "default",
        "format",
        "nullable",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-patch-strategy",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
    }
)


def _ref(ref: str) -> str:
    """A swagger reference of KServe's OpenAPI document, to local or Kubernetes definitions."""
    name = ref.removeprefix("#/definitions/")
    if name.startswith(("v1beta1.", "v1alpha1.")):
        return f"#/$defs/{name}"
    if name == "v1.ObjectMeta":
        return META
    if name == "resource.Quantity":
        return f"{K8S_ID}#/$defs/io.k8s.apimachinery.pkg.api.resource.Quantity"
    if name.startswith("k8s.io.api."):
        return f"{K8S_ID}#/$defs/io.{name}"
    if name.startswith("v1."):
        return f"{K8S_ID}#/$defs/io.k8s.api.core.{name}"
    raise ValueError(f"unexpected reference {ref}")


def openapi_to_jsonschema(node: Any) -> Any:
    """An OpenAPI v3 (structural) schema as strict JSON Schema: unknown fields are errors,
    as with `kubectl apply --validate=strict`, unless the schema preserves unknown fields."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(s) for name, s in value.items()}
        elif key == "$ref":
            out[key] = _ref(value)
        else:
            out[key] = openapi_to_jsonschema(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _k8s_registry(version: str) -> Registry:
    folder = f"v{version}-local-strict"
    ref = importlib.resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", folder, "_definitions.json"
    )
    definitions = Resource.from_contents(json.loads(ref.read_text()))
    return Registry().with_resource(K8S_ID, definitions)


def crd(kind: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / CRD_FILES[kind]).read_text())


@functools.cache
def _crd_validator(kind: str, api_version: str, k8s_version: str) -> jsonschema.Validator:
    doc = crd(kind)
    group, _, version = api_version.partition("/")
    if doc["spec"]["group"] != group:
        raise AssertionError(
            f"{kind}: apiVersion {api_version} is not of group {doc['spec']['group']}"
        )
    versions = {v["name"]: v for v in doc["spec"]["versions"]}
    if version not in versions:
        raise AssertionError(f"{kind}: the CRD serves {sorted(versions)}, not {version}")
    schema = openapi_to_jsonschema(versions[version]["schema"]["openAPIV3Schema"])
    # Kubernetes accepts apiVersion and kind on every object, listed in the schema (Istio's
    # are not) or not.
    typed = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
    schema["properties"] = {**typed, **schema["properties"]}
    schema["properties"]["metadata"] = {"$ref": META}
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry(k8s_version))


@functools.cache
def _kserve_validator(k8s_version: str) -> jsonschema.Validator:
    definitions = yaml.safe_load((CRDS / KSERVE_FILE).read_text())["definitions"]
    schema = {
        "$ref": "#/$defs/v1beta1.InferenceService",
        "$defs": {name: openapi_to_jsonschema(s) for name, s in definitions.items()},
    }
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry(k8s_version))


def _messages(validator: jsonschema.Validator, obj: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


def _issuer_errors(obj: dict[str, Any]) -> list[str]:
    # No schema committed for Issuer (see crds/SOURCES.md): check the one shape we write.
    if obj.get("apiVersion") != "cert-manager.io/v1" or obj.get("spec") != {"selfSigned": {}}:
        return [
            f"Issuer {obj.get('metadata', {}).get('name')}: expected a cert-manager.io/v1 "
            f"self-signed issuer, got {obj.get('spec')}"
        ]
    return []


def errors(obj: dict[str, Any], version: str) -> list[str]:
    """Why `obj` is not valid on Kubernetes `version` (empty when it is)."""
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    where = f"{kind} {name} (Kubernetes {version})"
    if kind in CRD_FILES:
        found = _messages(_crd_validator(kind, obj.get("apiVersion", ""), version), obj)
    elif kind == "InferenceService":
        found = _messages(_kserve_validator(version), obj)
    elif kind == "Issuer":
        found = _issuer_errors(obj)
    else:
        try:
            kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
            found = []
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top)"
            found = [f"{path}: {exc.message}"]
        except kubernetes_validate.SchemaNotFoundError as exc:
            found = [exc.message]
    return [f"{where}: {message}" for message in found]


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- the validator itself -------------------------------------------------------------------


def test_every_crd_fixture_is_a_crd_of_its_kind_with_a_schema():
    for kind, file in CRD_FILES.items():
        doc = crd(kind)
        assert doc["kind"] == "CustomResourceDefinition"
        assert doc["spec"]["names"]["kind"] == kind
        for version in doc["spec"]["versions"]:
            assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"] == "object"
        assert file in (CRDS / "SOURCES.md").read_text(), f"{file} has no provenance note"
    assert KSERVE_FILE in (CRDS / "SOURCES.md").read_text()


GOOD_PODMONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": "x"},
    "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "podMetricsEndpoints": [{"port": "iw-metrics", "interval": "15s"}],
    },
}


def test_a_good_custom_resource_passes():
    assert errors(GOOD_PODMONITOR, "1.32.0") == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: o["spec"]["podMetricsEndpoints"][0].update(prot="x"), "Additional properties"),
        (
            lambda o: o["spec"]["podMetricsEndpoints"][0].update(interval="15 seconds"),
            "does not match",
        ),
        (lambda o: o["spec"].pop("selector"), "'selector' is a required property"),
        (lambda o: o["metadata"].update(lables={}), "Additional properties"),
        (
            lambda o: o["spec"]["podMetricsEndpoints"][0].update(
                relabelings=[{"action": "rename"}]
            ),
            "is not one of",
        ),
    ],
    ids=[
        "unknown field",
        "bad duration",
        "missing selector",
        "typo in metadata",
        "bad relabel action",
    ],
)
def test_a_broken_podmonitor_is_rejected(mutate, expected):
    obj = copy.deepcopy(GOOD_PODMONITOR)
    mutate(obj)
    found = errors(obj, "1.25.0")
    assert found and expected in " ".join(found)


def test_a_broken_scaledobject_certificate_and_isvc_are_rejected():
    so = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}},
    }
    assert "'triggers' is a required property" in " ".join(errors(so, "1.30.0"))
    cert = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "x"},
        "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "privateKey": {"algorithm": "DSA"}},
    }
    assert "is not one of" in " ".join(errors(cert, "1.30.0"))
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {
            "predictor": {
                "minReplicas": "one",
                "containers": [{"name": "c", "image": "i", "portz": []}],
            }
        },
    }
    found = " ".join(errors(isvc, "1.30.0"))
    assert "'one' is not of type 'integer'" in found
    assert "'portz' was unexpected" in found or "Additional properties" in found


def test_a_wrong_api_version_for_a_crd_is_an_error():
    obj = copy.deepcopy(GOOD_PODMONITOR)
    obj["apiVersion"] = "monitoring.coreos.com/v2"
    with pytest.raises(AssertionError, match="serves"):
        errors(obj, "1.32.0")


def test_a_builtin_kind_with_an_unknown_field_fails_strict_validation():
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targetport": 80}]},
    }
    assert errors(svc, "1.25.0")
    svc["spec"]["ports"][0] = {"port": 80, "targetPort": 80}
    assert errors(svc, "1.25.0") == []


def test_a_kind_without_any_schema_is_reported_not_passed():
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}
    assert "Couldn't find schema" in " ".join(errors(obj, "1.32.0"))
