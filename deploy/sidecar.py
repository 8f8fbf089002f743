"""The sidecar contract: the one place that says what the inferwatch container looks like.

Reference deployments, `inferwatch inject` and the admission webhook all build the sidecar
here, as the plain dict the Kubernetes API takes (no Kubernetes client: the webhook runs in
the light sidecar image).
"""

from __future__ import annotations

from typing import Any

from inferwatch import __version__

IMAGE = f"ghcr.io/inferwatch/inferwatch:{__version__}"
CONTAINER_NAME = "inferwatch"
PORT = 9450
PORT_NAME = "iw-metrics"

# Pod labels: PodMonitors select on them and relabel `deployment` from the first.
LABEL_DEPLOYMENT = "inferwatch.io/deployment"
LABEL_ENGINE = "inferwatch.io/engine"
# Opt-in label for the webhook, on pods or namespaces; "false" on a pod opts it out.
LABEL_INJECT = "inferwatch.io/inject"
# Marks a pod template as injected (value: the inferwatch version that did it).
ANNOTATION_INJECTED = "inferwatch.io/injected"

# A Service with internalTrafficPolicy: Local in front of the GPU Operator's dcgm-exporter
# (deploy/gpu/), so each sidecar reads the exporter on its own node.
DCGM_SERVICE = "inferwatch-dcgm-exporter"
DCGM_NAMESPACE = "gpu-operator"
DCGM_PORT = 9400
DCGM_URL = f"http://{DCGM_SERVICE}.{DCGM_NAMESPACE}.svc:{DCGM_PORT}"

# Extended resources that mean "this container has a GPU", so the sidecar reads DCGM.
GPU_RESOURCES = ("nvidia.com/gpu", "aliyun.com/gpu-mem", "aliyun.com/gpu-count")

RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    # The exporter caps an upstream page at 8 MiB: a page that size (~70k series) peaks near
    # 100 MiB (bench/exporter.py; a 200-model vLLM page stays near 55 MiB).
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
RUN_AS = 65532


def args(
    engine: str,
    port: int,
    *,
    proxy: bool = False,
    model: str | None = None,
    dcgm: str | None = None,
) -> list[str]:
    """The sidecar's command line for an engine listening on `port` in the same pod."""
    upstream = f"http://127.0.0.1:{port}"
    if proxy:
        out = ["exporter", "--proxy", "--upstream", upstream, "--listen", f"0.0.0.0:{PORT}"]
    else:
        out = [
            "exporter",
            "--upstream",
            upstream,
            "--engine",
            engine,
            "--listen",
            f"0.0.0.0:{PORT}",
        ]
    if model:
        out += ["--model", model]
    if dcgm:
        out += ["--dcgm", dcgm]
    return out


def container(
    engine: str,
    port: int,
    *,
    proxy: bool = False,
    model: str | None = None,
    dcgm: str | None = None,
    image: str = IMAGE,
) -> dict[str, Any]:
    """The sidecar container, in the API's field names and a fixed field order."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args(engine, port, proxy=proxy, model=model, dcgm=dcgm),
        "env": [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            },
        ],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {k: dict(v) for k, v in RESOURCES.items()},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def uses_gpu(container_spec: dict[str, Any]) -> bool:
    resources = container_spec.get("resources")
    if not isinstance(resources, dict):
        return False
    for kind in ("limits", "requests"):
        amounts = resources.get(kind)
        if isinstance(amounts, dict) and any(name in amounts for name in GPU_RESOURCES):
            return True
    return False
