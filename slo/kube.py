"""Reading a Deployment's engine container through the `kubernetes` client.

The advisor needs the flags an engine was started with when the engine does not state them
(vLLM does not put `--max-num-seqs` on its metrics; SGLang states none). `DeploymentReader`
fetches the Deployment as the API server serves it (camelCase JSON, so JSON-patch paths built
from it are the API's own), picks the engine container (not the inferwatch sidecar), and says
which engine it runs.

Credentials: the pod's service account when running in a cluster, else a kubeconfig
(`--kubeconfig`, `$KUBECONFIG` or `~/.kube/config`). The service account needs `get` on
`deployments` in the namespaces it advises on. Anything that goes wrong (no credentials, a
403, a timeout) is a `KubeUnavailable` with the reason, and the advisor says the flags are
unknown instead of failing.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from inferwatch.alerts import promql
from inferwatch.deploy import engines, sidecar

CACHE_SECONDS = 30.0
TIMEOUT = (2.0, 3.0)  # connect, read


class KubeUnavailable(RuntimeError):
    """The Kubernetes API could not be used; the message says why."""


@dataclass(frozen=True)
class DeploymentSpec:
    """A Deployment's engine container, as the API server returned it."""

    namespace: str
    name: str
    replicas: int | None
    container_index: int
    container: dict[str, Any]
    engine: str | None

    @property
    def container_name(self) -> str:
        return str(self.container.get("name", ""))


def engine_container(containers: list[dict[str, Any]]) -> tuple[int, dict[str, Any], str | None]:
    """The container that runs the engine: one the deploy table recognises, else the first
    that is not the inferwatch sidecar."""
    candidates = [
        (i, c)
        for i, c in enumerate(containers)
        if isinstance(c, dict) and c.get("name") != sidecar.CONTAINER_NAME
    ]
    if not candidates:
        raise ValueError("the pod template has no container besides the inferwatch sidecar")
    for i, c in candidates:
        found = engines.identify(c)
        if found is not None:
            return i, c, found.name
    i, c = candidates[0]
    return i, c, None


def parse_deployment(doc: dict[str, Any]) -> DeploymentSpec:
    """A `DeploymentSpec` from the API's JSON of a Deployment."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    containers = template.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ValueError(f"Deployment {meta.get('name')!r} has no containers")
    index, container, engine = engine_container(containers)
    replicas = spec.get("replicas")
    return DeploymentSpec(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        replicas=replicas if isinstance(replicas, int) else None,
        container_index=index,
        container=container,
        engine=engine,
    )


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A `kubernetes` ApiClient: in-cluster, else the kubeconfig; KubeUnavailable if neither."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            except ConfigException:
                pass
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = kubeconfig or "~/.kube/config"
        raise KubeUnavailable(
            f"no in-cluster service account and no usable kubeconfig ({where}): {exc}"
        ) from None
    return client.ApiClient(configuration)


class DeploymentReader:
    """Reads Deployments, keeping each answer for `CACHE_SECONDS` (a page refresh or a
    recommendation per deployment must not hit the API server every time)."""

    def __init__(self, client: Any, cache_seconds: float = CACHE_SECONDS):
        from kubernetes import client as k

        self._apps = k.AppsV1Api(client)
        self._cache: dict[tuple[str, str], tuple[float, DeploymentSpec | None]] = {}
        self._lock = threading.Lock()
        self.cache_seconds = cache_seconds

    def read_many(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], DeploymentSpec | None]:
        """Several Deployments: one list call per namespace holding more than one of them."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        by_namespace: dict[str, list[str]] = {}
        for namespace, name in keys:
            by_namespace.setdefault(namespace, []).append(name)
        out: dict[tuple[str, str], DeploymentSpec | None] = {}
        for namespace, names in by_namespace.items():
            if len(names) == 1:
                out[(namespace, names[0])] = self.read(namespace, names[0])
                continue
            promql.validate_namespace(namespace)
            try:
                response = self._apps.list_namespaced_deployment(
                    namespace, _preload_content=False, _request_timeout=TIMEOUT
                )
                items = json.loads(response.data).get("items") or []
            except ApiException as exc:
                raise KubeUnavailable(
                    f"listing Deployments in {namespace}: HTTP {exc.status} {exc.reason}"
                ) from None
            except (HTTPError, OSError, ValueError) as exc:
                raise KubeUnavailable(f"listing Deployments in {namespace}: {exc}") from None
            listed: dict[str, DeploymentSpec] = {}
            for item in items:
                try:
                    spec = parse_deployment(item)
                except ValueError:
                    continue
                listed[spec.name] = spec
            now = time.monotonic()
            with self._lock:
                for name in names:
                    out[(namespace, name)] = listed.get(name)
                    self._cache[(namespace, name)] = (now, listed.get(name))
        return out

    def read(self, namespace: str, name: str) -> DeploymentSpec | None:
        """The Deployment's engine container; None when it does not exist (404)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        promql.validate_namespace(namespace)
        promql.validate_deployment(name)
        key = (namespace, name)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
                return hit[1]
        try:
            response = self._apps.read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
            doc = json.loads(response.data)
            found: DeploymentSpec | None = parse_deployment(doc)
        except ApiException as exc:
            if exc.status != 404:
                raise KubeUnavailable(
                    f"reading Deployment {namespace}/{name}: HTTP {exc.status} {exc.reason}"
                ) from None
            found = None
        except (HTTPError, OSError) as exc:
            raise KubeUnavailable(f"reading Deployment {namespace}/{name}: {exc}") from None
        except ValueError as exc:  # not JSON, or not a Deployment we can read
            raise KubeUnavailable(f"reading Deployment {namespace}/{name}: {exc}") from None
        with self._lock:
            self._cache[key] = (time.monotonic(), found)
        return found
