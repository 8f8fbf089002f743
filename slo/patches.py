"""Patches that apply a recommendation, and the `kubectl` commands that apply them.

Engine flags: an RFC 6902 JSON patch of the Deployment. When the Deployment was read, the
patch replaces the flag where the container sets it (`--flag=value`, `--flag value`, or TGI's
environment variable) and `test`s the container's name and the old value first, so a patch
computed from a stale Deployment fails instead of clobbering a change; a flag the container
does not set is appended to its args. Without the Deployment the flag is appended to the first
container's args (vLLM and SGLang parse the last occurrence of a flag) and the patch says so.

HPA: an `autoscaling/v2` HorizontalPodAutoscaler on `llm_requests_waiting` per pod, served by
the prometheus-adapter rule of `deploy/prometheus-adapter/` (the same rule, never another), or
a KEDA ScaledObject querying Prometheus for the deployment's total queue instead.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.slo.flags import Current, Flag, Location, format_value
from inferwatch.slo.kube import DeploymentSpec
from inferwatch.slo.models import Patch

# The HPA's metric, per pod, served by the prometheus-adapter rule of deploy/prometheus-adapter/.
QUEUE_METRIC = schema.family("llm_requests_waiting").name
PART_OF = {"app.kubernetes.io/part-of": "inferwatch", "app.kubernetes.io/managed-by": "inferwatch"}


def _container_path(index: int, *parts: str | int) -> str:
    return "/spec/template/spec/containers/" + "/".join(str(p) for p in (index, *parts))


def kubectl_patch(namespace: str, deployment: str, ops: list[dict[str, Any]]) -> str:
    body = json.dumps(ops, separators=(",", ":"))
    return (
        f"kubectl -n {shlex.quote(namespace)} patch deployment {shlex.quote(deployment)} "
        f"--type=json -p {shlex.quote(body)}"
    )


def kubectl_apply(namespace: str, manifest: dict[str, Any]) -> str:
    """`kubectl apply` of one object given inline (JSON is valid YAML; no temp file needed)."""
    body = json.dumps(manifest, separators=(",", ":"))
    return f"echo {shlex.quote(body)} | kubectl -n {shlex.quote(namespace)} apply -f -"


def flag_patch(
    current: Current,
    value: float | int | str,
    deployment: DeploymentSpec | None,
    namespace: str | None,
    name: str | None,
) -> Patch:
    """Set `current.flag` to `value` in the Deployment's engine container."""
    f = current.flag
    notes: list[str] = []
    if deployment is not None:
        ops = _ops_for_deployment(f, value, deployment)
    else:
        ops = [{"op": "add", "path": _container_path(0, "args", "-"), "value": f.render(value)}]
        notes.append(
            "The Deployment could not be read: this appends the flag to the first container's "
            "args (the engine's last occurrence of a flag wins); check the container index."
        )
        if f.engine == "tgi":
            notes.append(
                f"TGI refuses a flag given twice: if {f.name} is already in the args, "
                f"replace it there (or set {f.env})."
            )
    patch = Patch(json_patch=ops, notes=notes)
    if namespace and name:
        patch.kubectl["json-patch"] = kubectl_patch(namespace, name, ops)
    else:
        patch.notes.append("Pass --namespace and --deployment to get the kubectl command.")
    return patch


def _ops_for_deployment(f: Flag, value: float | int | str, d: DeploymentSpec) -> list[dict]:
    from inferwatch.slo.flags import find_in_container

    i = d.container_index
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": _container_path(i, "name"), "value": d.container_name}
    ]
    found = find_in_container(d.container, f)
    text = format_value(value)
    if found is None:
        if isinstance(d.container.get("args"), list):
            ops.append(
                {"op": "add", "path": _container_path(i, "args", "-"), "value": f.render(value)}
            )
        else:
            ops.append(
                {"op": "add", "path": _container_path(i, "args"), "value": [f.render(value)]}
            )
        return ops
    loc: Location = found.location
    if loc.field == "env":
        path = _container_path(i, "env", loc.index, "value")
        ops += [{"op": "test", "path": path, "value": found.value}, _replace(path, text)]
    elif loc.separate:
        path = _container_path(i, loc.field, loc.index + 1)
        ops += [{"op": "test", "path": path, "value": found.value}, _replace(path, text)]
    else:
        path = _container_path(i, loc.field, loc.index)
        old = d.container[loc.field][loc.index]
        ops += [{"op": "test", "path": path, "value": old}, _replace(path, f.render(value))]
    return ops


def _replace(path: str, value: str) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def replicas_patch(namespace: str | None, name: str | None, replicas: int) -> Patch:
    ops = [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
    patch = Patch(json_patch=ops)
    if namespace and name:
        patch.kubectl["scale"] = (
            f"kubectl -n {shlex.quote(namespace)} scale deployment {shlex.quote(name)} "
            f"--replicas={replicas}"
        )
    patch.notes.append("An HPA on the deployment overrides a manual scale: change its bounds.")
    return patch


# ---- HPA -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """An HPA's settings, as the advisor derives them."""

    min_replicas: int
    max_replicas: int
    queue_target: float  # waiting requests per pod
    scale_up_period: int  # seconds per added pod
    scale_up_window: int  # stabilization, seconds
    scale_down_period: int
    scale_down_window: int


def seed_scaling() -> Scaling:
    """The reference vLLM deployment's HPA: the seed's windows, one pod per period each way,
    and its queue target per pod."""
    from inferwatch.deploy import frameworks, manifests

    b = manifests.behavior()
    reference = frameworks.FRAMEWORKS["vllm"]
    assert reference.scale_metric == QUEUE_METRIC, "the reference HPA scales on the queue"
    return Scaling(
        min_replicas=manifests.MIN_REPLICAS,
        max_replicas=manifests.MAX_REPLICAS,
        queue_target=float(reference.scale_target),
        scale_up_period=b.scale_up.policies[0].period_seconds,
        scale_up_window=b.scale_up.stabilization_window_seconds,
        scale_down_period=b.scale_down.policies[0].period_seconds,
        scale_down_window=b.scale_down.stabilization_window_seconds,
    )


def quantity(value: float) -> str:
    """A Kubernetes quantity without float noise: `5`, `2500m`."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _behavior(s: Scaling) -> Any:
    from kubernetes import client as k

    def rules(window: int, period: int) -> Any:
        return k.V2HPAScalingRules(
            stabilization_window_seconds=window,
            policies=[k.V2HPAScalingPolicy(type="Pods", value=1, period_seconds=period)],
        )

    return k.V2HorizontalPodAutoscalerBehavior(
        scale_up=rules(s.scale_up_window, s.scale_up_period),
        scale_down=rules(s.scale_down_window, s.scale_down_period),
    )


def hpa_manifest(namespace: str, deployment: str, s: Scaling) -> dict[str, Any]:
    from kubernetes import client as k

    from inferwatch.deploy import manifests

    return manifests.to_dict(
        k.V2HorizontalPodAutoscaler(
            api_version="autoscaling/v2",
            kind="HorizontalPodAutoscaler",
            metadata=k.V1ObjectMeta(name=deployment, namespace=namespace, labels=dict(PART_OF)),
            spec=k.V2HorizontalPodAutoscalerSpec(
                scale_target_ref=k.V2CrossVersionObjectReference(
                    api_version="apps/v1", kind="Deployment", name=deployment
                ),
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
                metrics=[
                    k.V2MetricSpec(
                        type="Pods",
                        pods=k.V2PodsMetricSource(
                            metric=k.V2MetricIdentifier(name=QUEUE_METRIC),
                            target=k.V2MetricTarget(
                                type="AverageValue", average_value=quantity(s.queue_target)
                            ),
                        ),
                    )
                ],
                behavior=_behavior(s),
            ),
        )
    )


def queue_query(namespace: str, deployment: str) -> str:
    """The deployment's total queue: what KEDA divides by the per-pod threshold."""

    selector = promql.series(
        QUEUE_METRIC,
        promql.eq("namespace", promql.validate_namespace(namespace)),
        promql.eq("deployment", promql.validate_deployment(deployment)),
    )
    return f"sum({selector})"


def keda_manifest(
    namespace: str, deployment: str, s: Scaling, prometheus_url: str
) -> dict[str, Any]:
    from inferwatch.deploy import manifests

    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": deployment, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicaCount": s.min_replicas,
            "maxReplicaCount": s.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": s.scale_down_window,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": manifests.to_dict(_behavior(s))}
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": queue_query(namespace, deployment),
                        "threshold": format_value(float(s.queue_target)),
                    },
                }
            ],
        },
    }


def adapter_rules() -> dict[str, Any]:
    """The prometheus-adapter rule serving QUEUE_METRIC, as deploy/prometheus-adapter/ has it."""
    from inferwatch.deploy import manifests

    rules = [r for r in manifests.adapter_rules()["rules"] if r["name"]["as"] == QUEUE_METRIC]
    if len(rules) != 1:
        raise RuntimeError(f"deploy/prometheus-adapter/ has no single rule for {QUEUE_METRIC}")
    return {"rules": rules}


def hpa_patch(
    namespace: str | None, deployment: str | None, s: Scaling, prometheus_url: str
) -> Patch:
    if not namespace or not deployment:
        return Patch(notes=["Pass --namespace and --deployment to get the HPA manifests."])
    hpa = hpa_manifest(namespace, deployment, s)
    keda = keda_manifest(namespace, deployment, s, prometheus_url)
    return Patch(
        hpa=hpa,
        prometheus_adapter_rules=adapter_rules(),
        keda_scaled_object=keda,
        kubectl={
            "hpa": kubectl_apply(namespace, hpa),
            "keda": kubectl_apply(namespace, keda),
        },
        notes=[
            "Apply the HPA with the prometheus-adapter rule (it serves llm_requests_waiting per "
            "pod), or the KEDA ScaledObject instead of both; never the HPA and KEDA together.",
            "The adapter rule goes into prometheus-adapter's configuration: inferwatch ships it "
            "as a ConfigMap and as Helm values under deploy/prometheus-adapter/.",
        ],
    )
