"""Every dashboard, and the files `inferwatch dashboards build` writes.

Under the output directory (by default `dashboards/generated/`):

    <uid>.json                        the dashboard JSON, for import or file provisioning
    kubernetes/<uid>.yaml             a ConfigMap per dashboard, labelled grafana_dashboard: "1"
    kubernetes/kustomization.yaml     `kubectl apply -k` for all of them
    provisioning/inferwatch.yaml      a Grafana dashboard provider for mounted JSON files
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from inferwatch.dashboards import detail, fleet, gpu, lint, slo, style

# uid -> builder, in the order the docs list them.
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    fleet.UID: fleet.build,
    detail.UID: detail.build,
    gpu.UID: gpu.build,
    slo.UID: slo.build,
}

DEFAULT_OUT = Path("dashboards") / "generated"
# The label the Grafana sidecar of kube-prometheus-stack (and the grafana chart) watches.
SIDECAR_LABEL = {"grafana_dashboard": "1"}
# Read by the sidecar when its `folderAnnotation` is set to this name; harmless otherwise.
FOLDER_ANNOTATION = {"grafana_folder": "inferwatch"}
FOLDER = "inferwatch"
# Where the provisioning file expects the JSON files inside the Grafana container.
PROVISIONED_PATH = "/var/lib/grafana/dashboards/inferwatch"


def build_all() -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON data, each checked by `lint`."""
    dashboards = {}
    for uid, builder in BUILDERS.items():
        data = builder()
        if data["uid"] != uid:
            raise lint.DashboardError(
                f"{builder.__module__} builds uid {data['uid']!r}, not {uid!r}"
            )
        lint.check(data)
        dashboards[uid] = data
    return dashboards


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings (the dashboard JSON) as `|` blocks, readable in a diff."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=100)


def configmap(uid: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": uid,
            "labels": {
                **SIDECAR_LABEL,
                "app.kubernetes.io/name": "inferwatch",
                "app.kubernetes.io/component": "dashboards",
            },
            "annotations": FOLDER_ANNOTATION,
        },
        "data": {f"{uid}.json": text},
    }


def provisioning() -> dict[str, Any]:
    """A Grafana dashboard provider (provisioning/dashboards/*.yaml) for the JSON files."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "inferwatch",
                "folder": FOLDER,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": PROVISIONED_PATH},
            }
        ],
    }


def artifacts() -> dict[str, str]:
    """Relative path -> file text, for every generated file."""
    files: dict[str, str] = {}
    for uid, data in build_all().items():
        text = style.to_json(data)
        files[f"{uid}.json"] = text
        files[f"kubernetes/{uid}.yaml"] = _yaml(configmap(uid, text))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{uid}.yaml" for uid in BUILDERS],
    }
    files["kubernetes/kustomization.yaml"] = _yaml(kustomization)
    files["provisioning/inferwatch.yaml"] = _yaml(provisioning())
    return files


def write(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write every generated file under `out_dir`; the paths written."""
    written = []
    for relative, text in artifacts().items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
