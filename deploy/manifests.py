"""Kubernetes objects for the reference deployments, built with the `kubernetes` client's models.

Built-in kinds are client models serialized by the client itself; custom resources
(PodMonitor, ScaledObject, InferenceService, Certificate, Issuer), which the client has no
models for, are dicts in the same shape. The sidecar is never built here: every pod template
goes through `injector`, the code path `inferwatch inject` and the webhook use.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k

from inferwatch.deploy import injector, sidecar
from inferwatch.deploy.frameworks import FRAMEWORKS, MODEL_MOUNT, MODEL_PVC, Framework
from inferwatch.schema import family

MIN_REPLICAS = 1
MAX_REPLICAS = 4
PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
# The KEDA overlay's namespace: its Prometheus query has to name one.
KEDA_NAMESPACE = "llm-serving"
PART_OF = "inferwatch"  # on reference pods: the cluster-wide PodMonitor leaves them alone
GPU_NODE_LABEL = "nvidia.com/gpu.present"  # set by the GPU Operator's feature discovery
ACK_GPU_MEM_GIB = 16
ACK_NODE_LABEL = "ack.node.gpu.schedule"

WEBHOOK_NAME = "inferwatch-webhook"
WEBHOOK_NAMESPACE = "inferwatch-system"
WEBHOOK_PORT = 8443
WEBHOOK_TLS_SECRET = "inferwatch-webhook-tls"
WEBHOOK_ISSUER = "inferwatch-selfsigned"
WEBHOOK_PATH = "/mutate"

_api = k.ApiClient()
_FIRST = (
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
)


def to_dict(obj: Any) -> Any:
    """A model as the API's JSON, with apiVersion/kind/metadata/name first as people write it."""
    return _tidy(_api.sanitize_for_serialization(obj))


def _tidy(node: Any) -> Any:
    if isinstance(node, dict):
        keys = [key for key in _FIRST if key in node] + [key for key in node if key not in _FIRST]
        return {key: _tidy(node[key]) for key in keys}
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


def labels(fw: Framework) -> dict[str, str]:
    return {"app.kubernetes.io/name": fw.name, "app.kubernetes.io/part-of": PART_OF}


def selector(fw: Framework) -> dict[str, str]:
    return {"app.kubernetes.io/name": fw.name}


def _probe(fw: Framework, *, period: int, timeout: int, failures: int) -> k.V1Probe:
    if fw.health_path:
        return k.V1Probe(
            http_get=k.V1HTTPGetAction(path=fw.health_path, port="http"),
            period_seconds=period,
            timeout_seconds=timeout,
            failure_threshold=failures,
        )
    return k.V1Probe(
        _exec=k.V1ExecAction(command=list(fw.health_exec)),
        period_seconds=period,
        timeout_seconds=timeout,
        failure_threshold=failures,
    )


def engine_container(fw: Framework, *, name: str | None = None) -> k.V1Container:
    ports = [k.V1ContainerPort(name="http", container_port=fw.port, protocol="TCP")]
    ports += [
        k.V1ContainerPort(name=n, container_port=p, protocol="TCP") for n, p in fw.extra_ports
    ]
    gpu = {"nvidia.com/gpu": "1"}
    return k.V1Container(
        name=name or fw.name,
        image=fw.image,
        image_pull_policy="IfNotPresent",
        command=list(fw.command) or None,
        args=list(fw.args),
        env=[k.V1EnvVar(name=n, value=v) for n, v in fw.env] or None,
        ports=ports,
        resources=k.V1ResourceRequirements(
            requests={"cpu": fw.cpu_request, "memory": fw.memory_request, **gpu},
            limits={"memory": fw.memory_limit, **gpu},
        ),
        volume_mounts=[
            k.V1VolumeMount(
                name="models", mount_path=MODEL_MOUNT, read_only=fw.models_read_only or None
            ),
            k.V1VolumeMount(name="shm", mount_path="/dev/shm"),
        ],
        # Loading a model takes minutes: the start-up probe allows 30 and *is* the warm-up
        # request, so readiness (and liveness) begin only once the model has answered.
        startup_probe=k.V1Probe(
            _exec=k.V1ExecAction(command=list(fw.warmup)),
            period_seconds=10,
            timeout_seconds=60,
            failure_threshold=180,
        ),
        readiness_probe=_probe(fw, period=10, timeout=5, failures=3),
        liveness_probe=_probe(fw, period=30, timeout=10, failures=5),
        # Let the Service drop this endpoint before the engine stops taking requests.
        lifecycle=k.V1Lifecycle(
            pre_stop=k.V1LifecycleHandler(_exec=k.V1ExecAction(command=["sleep", "10"]))
        ),
    )


def pod_spec(fw: Framework, containers: list[k.V1Container]) -> k.V1PodSpec:
    return k.V1PodSpec(
        containers=containers,
        volumes=[
            k.V1Volume(
                name="models",
                persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                    claim_name=MODEL_PVC, read_only=fw.models_read_only or None
                ),
            ),
            k.V1Volume(
                name="shm", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit=fw.shm)
            ),
        ],
        node_selector={GPU_NODE_LABEL: "true"},
        tolerations=[k.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        # In-flight generations get two minutes to finish on rollout or scale-down.
        termination_grace_period_seconds=120,
    )


def deployment(fw: Framework) -> dict[str, Any]:
    template = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(
            labels=labels(fw),
            annotations={"kubectl.kubernetes.io/default-container": fw.name},
        ),
        spec=pod_spec(fw, [engine_container(fw)]),
    )
    obj = to_dict(
        k.V1Deployment(
            api_version="apps/v1",
            kind="Deployment",
            metadata=k.V1ObjectMeta(name=fw.name, labels=labels(fw)),
            spec=k.V1DeploymentSpec(
                replicas=MIN_REPLICAS,
                selector=k.V1LabelSelector(match_labels=selector(fw)),
                # A GPU is rarely free for a surge pod: replace one pod at a time instead.
                strategy=k.V1DeploymentStrategy(
                    type="RollingUpdate",
                    rolling_update=k.V1RollingUpdateDeployment(max_surge=0, max_unavailable=1),
                ),
                template=template,
            ),
        )
    )
    return inject(obj, fw)


def inject(obj: dict[str, Any], fw: Framework) -> dict[str, Any]:
    """The sidecar, added the way `inferwatch inject` adds it."""
    injector.inject_document(obj, injector.Options(engine=fw.engine))
    return obj


def service(fw: Framework) -> dict[str, Any]:
    # Ollama's API is served through the sidecar's proxy, which measures it.
    target = sidecar.PORT_NAME if fw.engine == "ollama" else "http"
    ports = [k.V1ServicePort(name="http", port=fw.port, target_port=target, protocol="TCP")]
    ports += [
        k.V1ServicePort(name=n, port=p, target_port=n, protocol="TCP")
        for n, p in fw.extra_ports
        if n != "metrics"
    ]
    return to_dict(
        k.V1Service(
            api_version="v1",
            kind="Service",
            metadata=k.V1ObjectMeta(name=fw.name, labels=labels(fw)),
            spec=k.V1ServiceSpec(type="ClusterIP", selector=selector(fw), ports=ports),
        )
    )


def pod_monitor(
    name: str,
    match_labels: dict[str, str],
    *,
    namespace: str | None = None,
    match_expressions: list[dict[str, Any]] | None = None,
    any_namespace: bool = False,
) -> dict[str, Any]:
    """A PodMonitor scraping sidecars, relabelling the workload label into `deployment`."""
    label = "__meta_kubernetes_pod_label_" + "".join(
        ch if ch.isalnum() else "_" for ch in sidecar.LABEL_DEPLOYMENT
    )
    sel: dict[str, Any] = {}
    if match_labels:
        sel["matchLabels"] = match_labels
    if match_expressions:
        sel["matchExpressions"] = match_expressions
    spec: dict[str, Any] = {
        "selector": sel,
        "podMetricsEndpoints": [
            {
                "port": sidecar.PORT_NAME,
                "path": "/metrics",
                "interval": "15s",
                "scrapeTimeout": "10s",
                "relabelings": [
                    {"action": "replace", "sourceLabels": [label], "targetLabel": "deployment"}
                ],
            }
        ],
    }
    if any_namespace:
        spec["namespaceSelector"] = {"any": True}
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata,
        "spec": spec,
    }


def base_pod_monitor(fw: Framework) -> dict[str, Any]:
    return pod_monitor(fw.name, {sidecar.LABEL_DEPLOYMENT: fw.name})


def injected_pod_monitor() -> dict[str, Any]:
    """Every pod with the sidecar in any namespace, except the reference ones (own monitors)."""
    return pod_monitor(
        "inferwatch-sidecars",
        {},
        namespace="monitoring",
        any_namespace=True,
        match_expressions=[
            {"key": sidecar.LABEL_ENGINE, "operator": "Exists"},
            {"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": [PART_OF]},
        ],
    )


def pdb(
    name: str,
    match_labels: dict[str, str],
    meta_labels: dict[str, str],
    namespace: str | None = None,
) -> dict[str, Any]:
    # maxUnavailable, not minAvailable: with one replica a node drain can still proceed,
    # and with several, voluntary evictions take them down one at a time.
    return to_dict(
        k.V1PodDisruptionBudget(
            api_version="policy/v1",
            kind="PodDisruptionBudget",
            metadata=k.V1ObjectMeta(name=name, namespace=namespace, labels=meta_labels),
            spec=k.V1PodDisruptionBudgetSpec(
                max_unavailable=1, selector=k.V1LabelSelector(match_labels=match_labels)
            ),
        )
    )


def behavior() -> k.V2HorizontalPodAutoscalerBehavior:
    """The seed's scaling behaviour: a new LLM pod takes minutes, so add one at a time."""
    return k.V2HorizontalPodAutoscalerBehavior(
        scale_up=k.V2HPAScalingRules(
            stabilization_window_seconds=60,
            policies=[k.V2HPAScalingPolicy(type="Pods", value=1, period_seconds=120)],
        ),
        scale_down=k.V2HPAScalingRules(
            stabilization_window_seconds=300,
            policies=[k.V2HPAScalingPolicy(type="Pods", value=1, period_seconds=120)],
        ),
    )


def hpa(name: str, target: str, fw: Framework, meta_labels: dict[str, str]) -> dict[str, Any]:
    """Scales on the framework's signal per pod (served by the prometheus-adapter rule)."""
    return to_dict(
        k.V2HorizontalPodAutoscaler(
            api_version="autoscaling/v2",
            kind="HorizontalPodAutoscaler",
            metadata=k.V1ObjectMeta(name=name, labels=meta_labels),
            spec=k.V2HorizontalPodAutoscalerSpec(
                scale_target_ref=k.V2CrossVersionObjectReference(
                    api_version="apps/v1", kind="Deployment", name=target
                ),
                min_replicas=MIN_REPLICAS,
                max_replicas=MAX_REPLICAS,
                metrics=[
                    k.V2MetricSpec(
                        type="Pods",
                        pods=k.V2PodsMetricSource(
                            metric=k.V2MetricIdentifier(name=family(fw.scale_metric).name),
                            target=k.V2MetricTarget(
                                type="AverageValue", average_value=str(fw.scale_target)
                            ),
                        ),
                    )
                ],
                behavior=behavior(),
            ),
        )
    )


def scale_query(fw: Framework, namespace: str) -> str:
    """One deployment's scaling signal: what the adapter rule serves per pod, summed."""
    return f'sum({fw.scale_metric}{{namespace="{namespace}",deployment="{fw.name}"}})'


def scaled_object(fw: Framework) -> dict[str, Any]:
    hpa_behavior = to_dict(behavior())
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": fw.name, "labels": labels(fw)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": fw.name},
            "minReplicaCount": MIN_REPLICAS,
            "maxReplicaCount": MAX_REPLICAS,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": hpa_behavior}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": PROMETHEUS_URL,
                        "query": scale_query(fw, KEDA_NAMESPACE),
                        "threshold": str(fw.scale_target),
                    },
                }
            ],
        },
    }


def ack_patch(fw: Framework) -> dict[str, Any]:
    """Strategic-merge patch: a share of one GPU's memory (cGPU) instead of a whole GPU."""
    share = {"nvidia.com/gpu": None, "aliyun.com/gpu-mem": ACK_GPU_MEM_GIB}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": fw.name},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": fw.name,
                            "resources": {"requests": dict(share), "limits": dict(share)},
                        }
                    ],
                    "nodeSelector": {GPU_NODE_LABEL: None, ACK_NODE_LABEL: "cgpu"},
                }
            },
        },
    }


def inference_service(fw: Framework) -> dict[str, Any]:
    """KServe RawDeployment with vLLM as a custom container; our HPA does the scaling."""
    container = engine_container(fw, name=injector.KSERVE_CONTAINER)
    container.args = [a if a != str(fw.port) else str(injector.KSERVE_PORT) for a in fw.args]
    container.ports = [
        k.V1ContainerPort(name="http", container_port=injector.KSERVE_PORT, protocol="TCP")
    ]
    container.startup_probe._exec.command = [
        c.replace(f":{fw.port}/", f":{injector.KSERVE_PORT}/") for c in fw.warmup
    ]
    spec = to_dict(pod_spec(fw, [container]))
    predictor = {
        "minReplicas": MIN_REPLICAS,
        "maxReplicas": MAX_REPLICAS,
        "labels": dict(labels(fw)),
        **spec,
    }
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": fw.name,
            "labels": labels(fw),
            "annotations": {
                "serving.kserve.io/deploymentMode": "RawDeployment",
                # KServe creates no autoscaler: the HPA on the queue length does the scaling.
                "serving.kserve.io/autoscalerClass": "external",
            },
        },
        "spec": {"predictor": predictor},
    }
    return inject(obj, fw)


def kserve_deployment_name(fw: Framework) -> str:
    return f"{fw.name}-predictor"


def adapter_rules() -> dict[str, Any]:
    """prometheus-adapter's rules serving each framework's scaling signal as a per-pod metric."""
    metrics = sorted({family(fw.scale_metric).name for fw in FRAMEWORKS.values()}, reverse=True)
    return {
        "rules": [
            {
                "seriesQuery": f'{metric}{{namespace!="",pod!=""}}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": f"^{metric}$", "as": metric},
                # Summed per pod: an engine with several ranks or models reports one series each.
                "metricsQuery": f"sum by (<<.GroupBy>>) ({metric}{{<<.LabelMatchers>>}})",
            }
            for metric in metrics
        ]
    }


def adapter_configmap(config_yaml: str) -> dict[str, Any]:
    return to_dict(
        k.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=k.V1ObjectMeta(
                name="adapter-config",
                namespace="monitoring",
                labels={
                    "app.kubernetes.io/name": "prometheus-adapter",
                    "app.kubernetes.io/part-of": PART_OF,
                },
            ),
            data={"config.yaml": config_yaml},
        )
    )


def dcgm_service() -> dict[str, Any]:
    """Node-local access to the GPU Operator's dcgm-exporter: each sidecar reads its own node."""
    return to_dict(
        k.V1Service(
            api_version="v1",
            kind="Service",
            metadata=k.V1ObjectMeta(
                name=sidecar.DCGM_SERVICE,
                namespace=sidecar.DCGM_NAMESPACE,
                labels={"app.kubernetes.io/part-of": PART_OF},
            ),
            spec=k.V1ServiceSpec(
                type="ClusterIP",
                selector={"app": "nvidia-dcgm-exporter"},
                internal_traffic_policy="Local",
                ports=[
                    k.V1ServicePort(
                        name="gpu-metrics",
                        port=sidecar.DCGM_PORT,
                        target_port=sidecar.DCGM_PORT,
                        protocol="TCP",
                    )
                ],
            ),
        )
    )


# --- the admission webhook ---------------------------------------------------------------


def _webhook_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": WEBHOOK_NAME, "app.kubernetes.io/part-of": PART_OF}


def _meta(name: str = WEBHOOK_NAME, **extra: Any) -> k.V1ObjectMeta:
    return k.V1ObjectMeta(name=name, namespace=WEBHOOK_NAMESPACE, labels=_webhook_labels(), **extra)


def webhook_objects() -> dict[str, Any]:
    """file name -> object, for deploy/webhook/."""
    tls_mount = "/tls"
    container = k.V1Container(
        name="webhook",
        image=sidecar.IMAGE,
        image_pull_policy="IfNotPresent",
        args=[
            "webhook",
            "serve",
            "--tls-cert",
            f"{tls_mount}/tls.crt",
            "--tls-key",
            f"{tls_mount}/tls.key",
            "--listen",
            f"0.0.0.0:{WEBHOOK_PORT}",
        ],
        ports=[k.V1ContainerPort(name="https", container_port=WEBHOOK_PORT, protocol="TCP")],
        readiness_probe=k.V1Probe(
            http_get=k.V1HTTPGetAction(path="/readyz", port="https", scheme="HTTPS"),
            period_seconds=5,
            timeout_seconds=2,
        ),
        liveness_probe=k.V1Probe(
            http_get=k.V1HTTPGetAction(path="/healthz", port="https", scheme="HTTPS"),
            period_seconds=10,
            timeout_seconds=2,
            failure_threshold=3,
        ),
        resources=k.V1ResourceRequirements(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "128Mi"}
        ),
        security_context=k.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=sidecar.RUN_AS,
            run_as_group=sidecar.RUN_AS,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            capabilities=k.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volume_mounts=[k.V1VolumeMount(name="tls", mount_path=tls_mount, read_only=True)],
    )
    pod_labels = {"app.kubernetes.io/name": WEBHOOK_NAME}
    deploy = k.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(),
        spec=k.V1DeploymentSpec(
            replicas=2,
            selector=k.V1LabelSelector(match_labels=pod_labels),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels={**_webhook_labels(), **pod_labels}),
                spec=k.V1PodSpec(
                    containers=[container],
                    service_account_name=WEBHOOK_NAME,
                    # The webhook answers from the request alone; it never calls the API.
                    automount_service_account_token=False,
                    volumes=[
                        k.V1Volume(
                            name="tls",
                            secret=k.V1SecretVolumeSource(secret_name=WEBHOOK_TLS_SECRET),
                        )
                    ],
                    topology_spread_constraints=[
                        k.V1TopologySpreadConstraint(
                            max_skew=1,
                            topology_key="kubernetes.io/hostname",
                            when_unsatisfiable="ScheduleAnyway",
                            label_selector=k.V1LabelSelector(match_labels=pod_labels),
                        )
                    ],
                ),
            ),
        ),
    )
    svc = k.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(),
        spec=k.V1ServiceSpec(
            type="ClusterIP",
            selector=pod_labels,
            ports=[k.V1ServicePort(name="https", port=443, target_port="https", protocol="TCP")],
        ),
    )
    namespace = k.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k.V1ObjectMeta(
            name=WEBHOOK_NAMESPACE, labels={"app.kubernetes.io/part-of": PART_OF}
        ),
    )
    account = k.V1ServiceAccount(
        api_version="v1",
        kind="ServiceAccount",
        metadata=_meta(),
        automount_service_account_token=False,
    )
    dns = [
        f"{WEBHOOK_NAME}.{WEBHOOK_NAMESPACE}.svc",
        f"{WEBHOOK_NAME}.{WEBHOOK_NAMESPACE}.svc.cluster.local",
    ]
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": to_dict(_meta(WEBHOOK_ISSUER)),
        "spec": {"selfSigned": {}},
    }
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": to_dict(_meta()),
        "spec": {
            "secretName": WEBHOOK_TLS_SECRET,
            "dnsNames": dns,
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature"],
            "issuerRef": {"name": WEBHOOK_ISSUER, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }
    return {
        "namespace.yaml": to_dict(namespace),
        "serviceaccount.yaml": to_dict(account),
        "certificate.yaml": [issuer, certificate],
        "deployment.yaml": to_dict(deploy),
        "service.yaml": to_dict(svc),
        "pdb.yaml": pdb(WEBHOOK_NAME, pod_labels, _webhook_labels(), WEBHOOK_NAMESPACE),
        "mutatingwebhookconfiguration.yaml": mutating_webhook_configuration(),
    }


def mutating_webhook_configuration() -> dict[str, Any]:
    never = k.V1LabelSelectorRequirement(
        key="kubernetes.io/metadata.name",
        operator="NotIn",
        values=["kube-system", WEBHOOK_NAMESPACE],
    )

    def hook(
        name: str, namespace_selector: k.V1LabelSelector, object_selector: k.V1LabelSelector
    ) -> k.V1MutatingWebhook:
        return k.V1MutatingWebhook(
            name=name,
            admission_review_versions=["v1"],
            client_config=k.AdmissionregistrationV1WebhookClientConfig(
                service=k.AdmissionregistrationV1ServiceReference(
                    name=WEBHOOK_NAME, namespace=WEBHOOK_NAMESPACE, path=WEBHOOK_PATH, port=443
                )
            ),
            rules=[
                k.V1RuleWithOperations(
                    api_groups=[""],
                    api_versions=["v1"],
                    operations=["CREATE"],
                    resources=["pods"],
                    scope="Namespaced",
                )
            ],
            # A webhook outage must never stop pods from starting.
            failure_policy="Ignore",
            timeout_seconds=5,
            side_effects="None",
            match_policy="Equivalent",
            reinvocation_policy="Never",
            namespace_selector=namespace_selector,
            object_selector=object_selector,
        )

    opted_in = {sidecar.LABEL_INJECT: "true"}
    return to_dict(
        k.V1MutatingWebhookConfiguration(
            api_version="admissionregistration.k8s.io/v1",
            kind="MutatingWebhookConfiguration",
            metadata=k.V1ObjectMeta(
                name=WEBHOOK_NAME,
                labels=_webhook_labels(),
                # cert-manager's CA injector fills in caBundle from the Certificate.
                annotations={
                    "cert-manager.io/inject-ca-from": f"{WEBHOOK_NAMESPACE}/{WEBHOOK_NAME}"
                },
            ),
            webhooks=[
                # Pods labelled inferwatch.io/inject=true, in any namespace but the system ones.
                hook(
                    "pods.inject.inferwatch.io",
                    k.V1LabelSelector(match_expressions=[never]),
                    k.V1LabelSelector(match_labels=opted_in),
                ),
                # Every pod of a namespace so labelled, unless the pod says either way itself.
                hook(
                    "namespaces.inject.inferwatch.io",
                    k.V1LabelSelector(match_labels=opted_in, match_expressions=[never]),
                    k.V1LabelSelector(
                        match_expressions=[
                            k.V1LabelSelectorRequirement(
                                key=sidecar.LABEL_INJECT, operator="DoesNotExist"
                            )
                        ]
                    ),
                ),
            ],
        )
    )
