"""Adding the sidecar to a pod: one code path for `inferwatch inject`, the webhook and render.

`plan()` looks at a pod template (labels, annotations, spec) and says what to add: the sidecar
container and the labels and annotation that are missing. `apply()` adds it to a dict in
place, keeping every other field and its order; `json_patch()` says the same as RFC 6902
operations for the admission webhook. `inject_document()` walks any workload kind (Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, List, KServe InferenceService).
Everything here works on plain dicts: no Kubernetes client, no YAML library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from inferwatch import __version__
from inferwatch.deploy import engines, sidecar

# Kinds whose pod template is at spec.template.
TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
)
# KServe model formats whose server is one of our engines, and the port its container uses.
KSERVE_FORMATS = {
    "vllm": "vllm",
    "huggingface": "vllm",
    "tgi": "tgi",
    "sglang": "sglang",
    "triton": "triton",
    "tensorrt": "trtllm",
    "tensorrt-llm": "trtllm",
}
KSERVE_PORT = 8080
KSERVE_CONTAINER = "kserve-container"
# Kubernetes label values: at most 63 characters, alphanumerics with -_. inside.
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class InjectError(ValueError):
    """An input the injector cannot handle; the message says where and why."""


@dataclass(frozen=True)
class Options:
    engine: str | None = None  # overrides detection
    container: str | None = None  # which container runs the engine, when several could
    dcgm: str | None = sidecar.DCGM_URL  # None: never read DCGM; used only for GPU pods
    image: str = sidecar.IMAGE


@dataclass(frozen=True)
class Plan:
    """What injecting a pod template adds. Empty (`container` None) when already injected."""

    engine: str = ""
    container: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.container is None


def is_injected(metadata: dict[str, Any] | None, spec: dict[str, Any] | None) -> bool:
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if isinstance(annotations, dict) and sidecar.ANNOTATION_INJECTED in annotations:
        return True
    containers = _list(spec.get("containers")) if isinstance(spec, dict) else []
    return any(isinstance(c, dict) and c.get("name") == sidecar.CONTAINER_NAME for c in containers)


def label_value(name: str) -> str:
    """A workload name made safe as a label value (names are at most 253 characters)."""
    value = re.sub(r"[^-A-Za-z0-9_.]", "-", name)[:63].strip("-_.")
    return value if _LABEL_VALUE.match(value) else ""


def plan(
    metadata: dict[str, Any] | None,
    spec: dict[str, Any],
    workload: str,
    opts: Options | None = None,
    *,
    where: str = "the pod",
) -> Plan:
    """What to add to a pod template with this metadata and spec, owned by `workload`."""
    opts = opts or Options()
    if not isinstance(spec, dict):
        raise InjectError(f"{where}: the pod spec is not a mapping")
    if metadata is not None and not isinstance(metadata, dict):
        raise InjectError(f"{where}: the pod metadata is not a mapping")
    for key in ("labels", "annotations"):
        if (metadata or {}).get(key) is not None and not isinstance(metadata[key], dict):
            raise InjectError(f"{where}: the pod's {key} are not a mapping")
    if is_injected(metadata, spec):
        return Plan()
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InjectError(f"{where}: the pod spec has no containers")
    if not all(isinstance(c, dict) for c in containers):
        raise InjectError(f"{where}: spec.containers holds something that is not a container")
    target, engine = _find_engine(containers, opts, where)
    found = engines.detect(engine, target)
    _check_ports(spec, found.port, where)
    dcgm = opts.dcgm if opts.dcgm and sidecar.uses_gpu(target) else None
    container = sidecar.container(
        engine.name, found.port, proxy=engine.proxy, model=found.model, dcgm=dcgm, image=opts.image
    )
    labels = (metadata or {}).get("labels") or {}
    add_labels = {}
    if sidecar.LABEL_DEPLOYMENT not in labels:
        value = label_value(workload)
        if not value:
            raise InjectError(
                f"{where}: cannot tell which workload owns this pod; give it a "
                f"name or set the label {sidecar.LABEL_DEPLOYMENT}"
            )
        add_labels[sidecar.LABEL_DEPLOYMENT] = value
    if sidecar.LABEL_ENGINE not in labels:
        add_labels[sidecar.LABEL_ENGINE] = engine.name
    notes = [f"{where}: {n}" for n in found.warnings]
    if engine.proxy:
        notes.append(
            f"{where}: {engine.name} has no /metrics, so the sidecar proxies its API: point "
            f"the Service's targetPort at {sidecar.PORT_NAME} ({sidecar.PORT}) so traffic "
            f"passes through it"
        )
    return Plan(
        engine=engine.name,
        container=container,
        labels=add_labels,
        annotations={sidecar.ANNOTATION_INJECTED: __version__},
        notes=tuple(notes),
    )


def _find_engine(
    containers: list[dict[str, Any]], opts: Options, where: str
) -> tuple[dict[str, Any], engines.Engine]:
    names = [str(c.get("name")) for c in containers]
    if opts.container is not None:
        chosen = [c for c in containers if c.get("name") == opts.container]
        if not chosen:
            raise InjectError(
                f"{where}: no container named {opts.container!r} (containers: {', '.join(names)})"
            )
        target = chosen[0]
        engine = engines.get(opts.engine) if opts.engine else engines.identify(target)
        if engine is None:
            raise InjectError(
                f"{where}: container {opts.container!r} runs no engine inferwatch "
                f"recognises; pass --engine"
            )
        return target, engine
    if opts.engine:
        engine = engines.get(opts.engine)
        matching = [c for c in containers if engines.matches(engine, c)]
        if len(matching) == 1:
            return matching[0], engine
        if len(containers) == 1:
            return containers[0], engine
        raise InjectError(
            f"{where}: cannot tell which of the containers {', '.join(names)} "
            f"runs {engine.name}; pass --container"
        )
    found = [(c, e) for c in containers if (e := engines.identify(c)) is not None]
    if not found:
        images = ", ".join(f"{c.get('name')} ({c.get('image')})" for c in containers)
        raise InjectError(
            f"{where}: no inference engine recognised in containers {images}; pass --engine"
        )
    if len(found) > 1:
        listed = ", ".join(f"{c.get('name')} ({e.name})" for c, e in found)
        raise InjectError(
            f"{where}: several containers look like engines: {listed}; pass --container"
        )
    return found[0]


def _check_ports(spec: dict[str, Any], engine_port: int, where: str) -> None:
    if engine_port == sidecar.PORT:
        raise InjectError(f"{where}: the engine listens on {sidecar.PORT}, the sidecar's port")
    for c in [*_list(spec.get("containers")), *_list(spec.get("initContainers"))]:
        for p in _list(c.get("ports") if isinstance(c, dict) else None):
            if not isinstance(p, dict):
                continue
            if p.get("containerPort") == sidecar.PORT or p.get("name") == sidecar.PORT_NAME:
                raise InjectError(
                    f"{where}: container {c.get('name')!r} already uses port "
                    f"{sidecar.PORT} or the port name {sidecar.PORT_NAME}"
                )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def apply(metadata: dict[str, Any], spec: dict[str, Any], p: Plan) -> None:
    """Add what the plan says to a pod template's metadata and spec, in place."""
    if p.empty:
        return
    for key, values in (("labels", p.labels), ("annotations", p.annotations)):
        if values:
            if metadata.get(key) is None:
                metadata[key] = {}
            metadata[key].update(values)
    spec["containers"].append(p.container)


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def json_patch(pod: dict[str, Any], p: Plan) -> list[dict[str, Any]]:
    """RFC 6902 operations that apply the plan to a Pod object."""
    if p.empty:
        return []
    ops: list[dict[str, Any]] = []
    metadata = pod.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        ops.append({"op": "add", "path": "/metadata", "value": {}})
    for key, values in (("labels", p.labels), ("annotations", p.annotations)):
        if not values:
            continue
        if not metadata.get(key):
            ops.append({"op": "add", "path": _pointer("metadata", key), "value": dict(values)})
        else:
            ops += [
                {"op": "add", "path": _pointer("metadata", key, k), "value": v}
                for k, v in values.items()
            ]
    ops.append({"op": "add", "path": "/spec/containers/-", "value": p.container})
    return ops


@dataclass
class Result:
    """What injecting one document did: how many pod templates changed, and what to say."""

    injected: int = 0
    already: int = 0
    notes: list[str] = field(default_factory=list)


def _name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    return str(metadata.get("name") or "") if isinstance(metadata, dict) else ""


def _describe(doc: dict[str, Any], index: int) -> str:
    name = _name(doc) or "(no name)"
    return f"document {index} ({doc.get('kind', 'no kind')} {name})"


def _template_at(doc: dict[str, Any], *path: str) -> dict[str, Any] | None:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def pod_workload(pod: dict[str, Any]) -> str:
    """The name of the workload that owns a pod: its controller's, minus a ReplicaSet's hash."""
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    refs = metadata.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, dict) or not ref.get("controller", True):
            continue
        name = str(ref.get("name") or "")
        if ref.get("kind") == "ReplicaSet":
            labels = metadata.get("labels")
            pod_hash = labels.get("pod-template-hash") if isinstance(labels, dict) else None
            if pod_hash and name.endswith("-" + pod_hash):
                return name[: -len(pod_hash) - 1]
        return name
    if metadata.get("name"):
        return str(metadata["name"])
    return str(metadata.get("generateName") or "").rstrip("-")


def inject_document(
    doc: Any, opts: Options | None = None, *, index: int = 1, where: str | None = None
) -> Result:
    """Inject every pod template in one parsed YAML document (the `index`th), in place."""
    opts = opts or Options()
    result = Result()
    if doc is None:
        return result
    if not isinstance(doc, dict):
        raise InjectError(
            f"{where or f'document {index}'}: not a Kubernetes object (a {type(doc).__name__})"
        )
    kind = doc.get("kind")
    if not kind or not isinstance(kind, str):
        named = f" ({_name(doc)})" if _name(doc) else ""
        raise InjectError(f"{where or f'document {index}{named}'}: no kind")
    where = where or _describe(doc, index)
    name = _name(doc)
    if kind == "List" or (kind.endswith("List") and isinstance(doc.get("items"), list)):
        items = doc.get("items")
        if items is not None and not isinstance(items, list):
            raise InjectError(f"{where}: `items` is a {type(items).__name__}, not a list")
        for i, item in enumerate(items or [], 1):
            item_where = f"{where} item {i}"
            if isinstance(item, dict):
                item_where += f" ({item.get('kind', 'no kind')} {_name(item) or '(no name)'})"
            sub = inject_document(item, opts, index=index, where=item_where)
            result.injected += sub.injected
            result.already += sub.already
            result.notes += sub.notes
        return result
    if kind in TEMPLATE_KINDS:
        template = _template_at(doc, "spec", "template")
        _inject_template(template, name, opts, where, result)
    elif kind == "CronJob":
        template = _template_at(doc, "spec", "jobTemplate", "spec", "template")
        _inject_template(template, name, opts, where, result)
    elif kind == "Pod":
        _inject_template(doc, pod_workload(doc), opts, where, result)
    elif kind == "InferenceService":
        _inject_isvc(doc, name, opts, where, result)
    return result


def _inject_template(
    template: dict[str, Any] | None, workload: str, opts: Options, where: str, result: Result
) -> None:
    if template is None or not isinstance(template.get("spec"), dict):
        raise InjectError(f"{where}: no pod template (spec.template.spec is missing)")
    if template.get("metadata") is None:
        template["metadata"] = {}
    p = plan(template["metadata"], template["spec"], workload, opts, where=where)
    if p.empty:
        result.already += 1
        return
    apply(template["metadata"], template["spec"], p)
    result.injected += 1
    result.notes += p.notes


def _inject_isvc(doc: dict[str, Any], name: str, opts: Options, where: str, result: Result) -> None:
    """KServe: the predictor holds pod-spec fields, and its labels/annotations reach the pod."""
    predictor = _template_at(doc, "spec", "predictor")
    if predictor is None:
        raise InjectError(f"{where}: no spec.predictor")
    model = predictor.get("model")
    meta = {key: predictor.get(key) for key in ("labels", "annotations")}
    if isinstance(model, dict):
        # The model container is built by KServe from the model spec; sidecars go beside it
        # in predictor.containers.
        fmt_spec = model.get("modelFormat")
        fmt = str(fmt_spec.get("name") or "").lower() if isinstance(fmt_spec, dict) else ""
        engine = opts.engine or KSERVE_FORMATS.get(fmt)
        if engine is None:
            raise InjectError(
                f"{where}: model format {fmt or '(none)'!r} is not an LLM engine "
                f"inferwatch knows; pass --engine"
            )
        model_container = {
            "name": KSERVE_CONTAINER,
            "ports": [{"containerPort": KSERVE_PORT}],
            **{k: model[k] for k in ("image", "args", "command", "env", "resources") if k in model},
        }
        if predictor.get("containers") is not None and not isinstance(
            predictor["containers"], list
        ):
            raise InjectError(f"{where}: spec.predictor.containers is not a list")
        spec = {"containers": [model_container, *_list(predictor.get("containers"))]}
        p = plan(
            meta,
            spec,
            name,
            Options(engine=engine, container=KSERVE_CONTAINER, dcgm=opts.dcgm, image=opts.image),
            where=where,
        )
        if p.empty:
            result.already += 1
            return
        if predictor.get("containers") is None:
            predictor["containers"] = []
        predictor["containers"].append(p.container)
    elif isinstance(predictor.get("containers"), list):
        p = plan(meta, predictor, name, opts, where=where)
        if p.empty:
            result.already += 1
            return
        predictor["containers"].append(p.container)
    else:
        raise InjectError(f"{where}: spec.predictor has neither model nor containers")
    for key, values in (("labels", p.labels), ("annotations", p.annotations)):
        if values:
            if predictor.get(key) is None:
                predictor[key] = {}
            predictor[key].update(values)
    result.injected += 1
    result.notes += p.notes
