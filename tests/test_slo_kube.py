"""Reading a Deployment's flags: the `kubernetes` client talking HTTP to a local server that
answers like the API server with a recorded Deployment, and the advisor's patch applied to it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import pytest

from inferwatch.slo.flags import read_flags
from inferwatch.slo.kube import DeploymentReader, KubeUnavailable, api_client
from inferwatch.slo.prom import Prometheus
from inferwatch.slo.service import ServiceConfig, SLOService
from tests.fixtures.slo import history
from tests.fixtures.slo.apiserver import FakeApiServer, recorded
from tests.test_deploy_schemas import errors


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    other = copy.deepcopy(recorded())
    other["metadata"]["name"] = "kv-full"
    server = FakeApiServer([recorded(), other]).start()
    yield server
    server.stop()


@pytest.fixture
def reader(apiserver: FakeApiServer, tmp_path: Path) -> DeploymentReader:
    return DeploymentReader(api_client(str(apiserver.kubeconfig(tmp_path / "kubeconfig"))))


def test_the_client_reads_the_recorded_deployment(reader: DeploymentReader) -> None:
    d = reader.read("shop", "queued")
    assert d is not None
    assert (d.namespace, d.name, d.replicas) == ("shop", "queued", 2)
    assert (d.container_index, d.container_name, d.engine) == (0, "vllm", "vllm")
    flags = read_flags("vllm", {}, d.container)
    seqs = flags["--max-num-seqs"]
    assert (seqs.value, seqs.source) == (64, "deployment")
    assert seqs.location is not None and (seqs.location.field, seqs.location.separate) == (
        "args",
        True,
    )
    assert flags["--gpu-memory-utilization"].value == 0.9
    assert flags["--kv-cache-dtype"].source == "default"  # not set: vLLM's default, said so


def test_reads_are_cached(reader: DeploymentReader, apiserver: FakeApiServer) -> None:
    reader.read("shop", "queued")
    reader.read("shop", "queued")
    assert apiserver.requests.count("/apis/apps/v1/namespaces/shop/deployments/queued") == 1


def test_several_deployments_of_a_namespace_are_one_list_call(
    reader: DeploymentReader, apiserver: FakeApiServer
) -> None:
    found = reader.read_many([("shop", "queued"), ("shop", "kv-full"), ("shop", "gone")])
    assert found[("shop", "queued")].name == "queued"  # type: ignore[union-attr]
    assert found[("shop", "gone")] is None
    assert apiserver.requests == ["/apis/apps/v1/namespaces/shop/deployments"]


def test_a_missing_deployment_is_none_and_forbidden_is_said(reader: DeploymentReader) -> None:
    assert reader.read("shop", "nope") is None
    with pytest.raises(KubeUnavailable, match="HTTP 403"):
        reader.read("forbidden", "queued")


def test_a_wrong_token_and_a_dead_server_are_unavailable(
    apiserver: FakeApiServer, tmp_path: Path
) -> None:
    wrong = DeploymentReader(
        api_client(str(apiserver.kubeconfig(tmp_path / "wrong", token="nope")))
    )
    with pytest.raises(KubeUnavailable, match="HTTP 401"):
        wrong.read("shop", "queued")
    apiserver.stop()
    gone = DeploymentReader(api_client(str(apiserver.kubeconfig(tmp_path / "gone"))))
    with pytest.raises(KubeUnavailable, match="reading Deployment shop/queued"):
        gone.read("shop", "queued")


def test_no_credentials_at_all_is_said_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeUnavailable, match="no in-cluster service account"):
        api_client()


def test_names_are_validated_before_any_request(
    reader: DeploymentReader, apiserver: FakeApiServer
) -> None:
    with pytest.raises(ValueError, match="not valid"):
        reader.read("shop", '"} or vector(1) #')
    assert apiserver.requests == []


@pytest.mark.prometheus
def test_the_advice_reads_current_flags_and_its_patch_applies(
    apiserver: FakeApiServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fleet = history.fleet(tmp_path_factory.mktemp("slo-fleet"))
    reader = DeploymentReader(api_client(str(apiserver.kubeconfig(tmp_path / "kubeconfig"))))
    prom = Prometheus(fleet.prometheus.url)
    try:
        (a,) = SLOService(fleet.specs, prom, ServiceConfig(), reader).advice("shop", "queued")
    finally:
        prom.close()
    (r,) = [r for r in a.recommendations if r.parameter == "--max-num-seqs"]
    assert (r.current, r.current_source, r.proposed, r.direction) == (
        64,
        "deployment",
        256,
        "raise",
    )
    assert r.target.container == "vllm"
    assert a.flags["--max-num-seqs"].source == "deployment"
    assert any(e.source == "kubernetes" and "args[" in e.note for e in r.evidence)
    deployment = recorded()
    patched = jsonpatch.apply_patch(deployment, r.patch.json_patch)
    args = patched["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-num-seqs") + 1] == "256"
    assert (
        patched["spec"]["template"]["spec"]["containers"][1]
        == (deployment["spec"]["template"]["spec"]["containers"][1])
    )
    clean = {k: v for k, v in patched.items() if k != "status"}
    clean["metadata"] = {k: v for k, v in patched["metadata"].items() if k != "managedFields"}
    assert errors(clean, "1.32.0") == []
    # Computed from a Deployment that has changed since: the patch refuses to apply.
    stale = recorded()
    stale["spec"]["template"]["spec"]["containers"][0]["args"][args.index("--max-num-seqs") + 1] = (
        "96"
    )
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(stale, r.patch.json_patch)
