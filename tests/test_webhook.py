"""The admission webhook: real AdmissionReview JSON in, a JSON patch that jsonpatch applies to
a Pod that validates; an empty answer where nothing is to be done; 400 with a reason for a
review it cannot read, never a 500 — checked on the answering function and on the real server
(`inferwatch webhook serve` over TLS, started as its own process)."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.deploy import injector, sidecar, webhook
from tests.conftest import FIXTURES, require_tool
from tests.harness import procs
from tests.test_deploy_schemas import K8S_VERSIONS, errors

REVIEW = json.loads((FIXTURES / "inject" / "admissionreview-pod.json").read_text())


def review(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(REVIEW)
    body["request"].update(changes)
    return body


def patched(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(body["request"]["object"], ops)


# --- the answer --------------------------------------------------------------------------------


def test_a_pod_gets_the_sidecar_and_still_validates():
    answer = webhook.review(REVIEW).review()
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert response["uid"] == REVIEW["request"]["uid"]
    assert response["allowed"] is True
    pod = patched(REVIEW, answer)
    for version in K8S_VERSIONS:
        assert errors(pod, version) == []
    side = pod["spec"]["containers"][-1]
    assert side == sidecar.container("vllm", 8000, dcgm=sidecar.DCGM_URL)
    # The Deployment's name, from the ReplicaSet that owns the pod.
    assert pod["metadata"]["labels"][sidecar.LABEL_DEPLOYMENT] == "llama-chat"
    assert pod["metadata"]["labels"][sidecar.LABEL_ENGINE] == "vllm"
    assert sidecar.ANNOTATION_INJECTED in pod["metadata"]["annotations"]
    # Everything else is as it was.
    before = REVIEW["request"]["object"]
    assert pod["spec"]["containers"][:-1] == before["spec"]["containers"]
    assert {k: v for k, v in pod["spec"].items() if k != "containers"} == {
        k: v for k, v in before["spec"].items() if k != "containers"
    }


def test_the_webhook_and_the_cli_add_the_same_sidecar():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    injector.inject_document(pod)
    via_webhook = patched(REVIEW, webhook.review(REVIEW).review())
    assert via_webhook == pod


def test_a_pod_already_injected_gets_an_empty_patch():
    pod = patched(REVIEW, webhook.review(REVIEW).review())
    again = webhook.review(review(object=pod)).review()["response"]
    assert again == {"uid": REVIEW["request"]["uid"], "allowed": True}


def test_a_pod_without_labels_or_annotations_gets_them_created():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    del pod["metadata"]["labels"]
    del pod["metadata"]["ownerReferences"]
    pod["metadata"]["name"] = "solo"
    ops = webhook.review(review(object=pod)).patch
    assert {
        "op": "add",
        "path": "/metadata/labels",
        "value": {sidecar.LABEL_DEPLOYMENT: "solo", sidecar.LABEL_ENGINE: "vllm"},
    } in ops
    assert any(op["path"] == "/metadata/annotations" for op in ops)
    result = jsonpatch.apply_patch(pod, ops)
    assert errors(result, "1.32.0") == []


def test_label_keys_with_slashes_are_escaped_in_the_patch():
    ops = webhook.review(REVIEW).patch
    paths = {op["path"] for op in ops}
    assert "/metadata/labels/inferwatch.io~1deployment" in paths
    assert "/metadata/annotations" in paths  # the pod had none


@pytest.mark.parametrize(
    "changes",
    [
        {"namespace": "kube-system"},
        {"operation": "UPDATE"},
        {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
    ],
    ids=["kube-system", "update", "not a pod"],
)
def test_nothing_to_do_is_an_empty_allowed_answer(changes):
    answer = webhook.review(review(**changes)).review()["response"]
    assert answer == {"uid": REVIEW["request"]["uid"], "allowed": True}


def test_a_pod_that_opts_out_is_left_alone():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    pod["metadata"]["labels"][sidecar.LABEL_INJECT] = "false"
    assert webhook.review(review(object=pod)).patch == []


def test_a_pod_without_an_engine_is_admitted_unchanged_with_a_warning():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    pod["spec"]["containers"][0]["image"] = "nginx:1.27"
    pod["spec"]["containers"][0]["command"] = ["nginx"]
    response = webhook.review(review(object=pod)).review()["response"]
    assert "patch" not in response and response["allowed"] is True
    assert "no inference engine recognised" in response["warnings"][0]


@pytest.mark.parametrize(
    "body, reason",
    [
        ([1, 2], "not a JSON object"),
        ({"kind": "Pod"}, "kind is 'Pod'"),
        ({**REVIEW, "apiVersion": "admission.k8s.io/v1beta1"}, "speaks admission.k8s.io/v1"),
        ({**REVIEW, "request": None}, "AdmissionReview.request is missing"),
        (review(uid=7), "request.uid is missing or not a str"),
        (review(uid=""), "request.uid is empty"),
        (review(object="pod"), "request.object is missing or not a dict"),
        (review(object={"metadata": {}}), "request.object.spec is missing"),
        (review(kind="Pod"), "request.kind is not an object"),
    ],
)
def test_reviews_it_cannot_read_are_refused_with_the_reason(body, reason):
    with pytest.raises(webhook.BadReview, match=reason):
        webhook.review(body)


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "spec",
                    "containers",
                    "labels",
                    "name",
                    "image",
                    "ports",
                    "ownerReferences",
                    "kind",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["object", "kind", "uid", "namespace", "operation"]), value=_json)
def test_any_review_is_answered_or_refused_with_a_reason_never_a_crash(field, value):
    body = review(**{field: value})
    try:
        answer = webhook.review(body).review()
    except webhook.BadReview as exc:
        assert str(exc)
    else:
        assert answer["response"]["allowed"] is True


# --- the real server --------------------------------------------------------------------------


def make_cert(folder: Path, name: str = "tls") -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=inferwatch-webhook",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("webhook")
    cert, key = make_cert(folder)

    def launch(port: int) -> procs.Proc:
        proc = procs.start(
            [
                sys.executable,
                "-m",
                "inferwatch.cli",
                "webhook",
                "serve",
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            name="webhook",
            workdir=folder,
        )
        wait_ready(proc, f"https://127.0.0.1:{port}", cert)
        return proc

    proc = procs.on_free_port(launch)
    url = proc.args[proc.args.index("--listen") + 1]
    with httpx.Client(
        base_url=f"https://{url}",
        verify=ssl.create_default_context(cafile=str(cert)),
        trust_env=False,
        timeout=10,
    ) as client:
        yield client
    assert proc.stop() == 0, proc.log_tail()


def wait_ready(proc: procs.Proc, base: str, cert: Path, timeout: float = 30) -> None:
    import time

    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise proc.fail(f"exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", verify=context, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise proc.fail("not ready")


def test_the_server_answers_a_review_over_tls(server):
    response = server.post("/mutate", json=REVIEW)
    assert response.status_code == 200
    answer = response.json()
    assert answer["response"]["uid"] == REVIEW["request"]["uid"]
    pod = patched(REVIEW, answer)
    assert pod["spec"]["containers"][-1]["name"] == sidecar.CONTAINER_NAME
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b"[]", "the body is not a JSON object"),
        (json.dumps({"kind": "AdmissionReview"}).encode(), "apiVersion is None"),
        (json.dumps(review(uid=None)).encode(), "request.uid"),
        (json.dumps(review(object=None)).encode(), "request.object"),
    ],
)
def test_the_server_refuses_a_broken_review_with_400_and_the_reason(server, content, reason):
    response = server.post("/mutate", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_a_huge_body_is_refused_without_reading_it_all(server):
    response = server.post("/mutate", content=b"x" * (webhook.MAX_BODY + 1))
    assert response.status_code == 413


def test_the_server_survives_all_that_and_still_injects(server):
    assert server.get("/mutate").status_code == 405
    assert server.post("/mutate", json=REVIEW).status_code == 200


# --- certificates and the command line ----------------------------------------------------------


def test_a_rotated_certificate_is_picked_up_and_a_broken_one_is_not(tmp_path):
    cert, key = make_cert(tmp_path, "a")
    certs = webhook.Certificates(str(cert), str(key))
    assert certs.reload_if_changed() is False
    new_cert, new_key = make_cert(tmp_path, "b")
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    assert certs.reload_if_changed() is True
    # Mid-rotation: a certificate without its key. The old pair stays in use.
    third, _ = make_cert(tmp_path, "c")
    cert.write_bytes(third.read_bytes())
    assert certs.reload_if_changed() is False


def test_serve_refuses_missing_certificates_and_bad_listen_addresses(tmp_path):
    base = [sys.executable, "-m", "inferwatch.cli", "webhook", "serve"]
    out = subprocess.run(
        [*base, "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "cannot load --tls-cert" in out.stderr and "Traceback" not in out.stderr
    cert, key = make_cert(tmp_path)
    out = subprocess.run(
        [*base, "--tls-cert", str(cert), "--tls-key", str(key), "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "expected HOST:PORT" in out.stderr


def test_a_pod_with_null_metadata_is_patched_into_shape():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    p = injector.plan(pod["metadata"], pod["spec"], "chat")
    pod["metadata"] = None
    result = jsonpatch.apply_patch(pod, injector.json_patch(pod, p))
    assert result["metadata"]["labels"][sidecar.LABEL_DEPLOYMENT] == "chat"
    assert result["spec"]["containers"][-1]["name"] == sidecar.CONTAINER_NAME


def test_a_pod_nobody_owns_or_names_is_admitted_with_a_warning():
    pod = copy.deepcopy(REVIEW["request"]["object"])
    pod["metadata"] = None
    response = webhook.review(review(object=pod)).review()["response"]
    assert "patch" not in response
    assert "cannot tell which workload owns this pod" in response["warnings"][0]


def test_the_webhook_runs_on_the_sidecar_images_dependencies_alone():
    # The image installs inferwatch[exporter]: no PyYAML, no kubernetes client, no jsonpatch.
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('yaml', 'kubernetes', 'jsonpatch', 'fastapi'):\n"
        "            raise ImportError('not in the sidecar image: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from inferwatch.deploy import webhook\n"
        "from inferwatch.cli import main\n"
        "sys.argv = ['inferwatch', 'webhook', 'serve', '--help']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--tls-cert" in out.stdout
