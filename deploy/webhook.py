"""The mutating admission webhook: `POST /mutate` answers AdmissionReview v1 for Pods.

It adds the same sidecar as `inferwatch inject` (the injector's `plan`, turned into a JSON
patch). Which pods reach it is decided by the MutatingWebhookConfiguration's selectors
(deploy/webhook/); here it still never touches kube-system, never injects twice and honours
`inferwatch.io/inject: "false"` on a pod. A review it cannot read gets 400 with the reason; a
pod it cannot inject is admitted unchanged with a warning, so it never blocks a pod.
Runs in the sidecar image: aiohttp and the standard library only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from inferwatch import __version__
from inferwatch.deploy import injector, sidecar

log = logging.getLogger("inferwatch.webhook")

API_VERSION = "admission.k8s.io/v1"
NEVER_NAMESPACES = frozenset({"kube-system"})
# A Pod's AdmissionReview is a few kB; 3 MiB is the API server's own request limit.
MAX_BODY = 3 * 1024 * 1024


class BadReview(ValueError):
    """An AdmissionReview that cannot be answered; the message is the reason."""


@dataclass(frozen=True)
class Answer:
    uid: str
    patch: list[dict[str, Any]]
    warnings: tuple[str, ...] = ()

    def review(self) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": self.uid, "allowed": True}
        if self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(
                json.dumps(self.patch, separators=(",", ":")).encode()
            ).decode()
        if self.warnings:
            response["warnings"] = list(self.warnings)
        return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _field(node: Any, key: str, kind: type, where: str) -> Any:
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, kind):
        raise BadReview(f"{where}.{key} is missing or not a {kind.__name__}")
    return value


def review(body: Any, opts: injector.Options | None = None) -> Answer:
    """The answer to one AdmissionReview (already parsed from JSON)."""
    if not isinstance(body, dict):
        raise BadReview("the body is not a JSON object")
    if body.get("kind") != "AdmissionReview":
        raise BadReview(f"kind is {body.get('kind')!r}, not 'AdmissionReview'")
    if body.get("apiVersion") != API_VERSION:
        raise BadReview(
            f"apiVersion is {body.get('apiVersion')!r}; this webhook speaks {API_VERSION}"
        )
    request = _field(body, "request", dict, "AdmissionReview")
    uid = _field(request, "uid", str, "request")
    if not uid:
        raise BadReview("request.uid is empty")
    kind = request.get("kind") or {}
    if not isinstance(kind, dict):
        raise BadReview("request.kind is not an object")
    if kind.get("kind") != "Pod" or request.get("operation") != "CREATE":
        return Answer(uid, [])
    pod = _field(request, "object", dict, "request")
    metadata = pod.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadReview("request.object.metadata is not an object")
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    if not isinstance(namespace, str):
        raise BadReview("request.namespace is not a string")
    if namespace in NEVER_NAMESPACES:
        return Answer(uid, [])
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise BadReview("request.object.metadata.labels is not an object")
    if str(labels.get(sidecar.LABEL_INJECT, "")).lower() == "false":
        return Answer(uid, [])
    if not isinstance(pod.get("spec"), dict):
        raise BadReview("request.object.spec is missing or not an object")
    workload = injector.pod_workload(pod)
    where = f"pod {namespace}/{metadata.get('name') or workload or '(unnamed)'}"
    try:
        p = injector.plan(metadata, pod["spec"], workload, opts, where=where)
    except injector.InjectError as exc:
        log.info("not injected", extra={"reason": str(exc)})
        return Answer(uid, [], (f"inferwatch: sidecar not injected: {exc}",))
    if p.empty:
        return Answer(uid, [])
    log.info("injected", extra={"pod": where, "engine": p.engine})
    return Answer(uid, injector.json_patch(pod, p), tuple(f"inferwatch: {n}" for n in p.notes))


def build_app(opts: injector.Options | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def mutate(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _bad(f"the body is larger than {MAX_BODY} bytes", status=413)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _bad(f"the body is not JSON: {exc}")
        try:
            answer = review(body, opts)
        except BadReview as exc:
            return _bad(str(exc))
        except Exception:  # never a 500: the API server would treat it as a failed call
            log.exception("unexpected error")
            uid = str((body.get("request") or {}).get("uid") or "")
            answer = Answer(uid, [], ("inferwatch: sidecar not injected: internal error",))
        return web.json_response(answer.review())

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text=f"inferwatch webhook {__version__}\n")

    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", ok)
    return app


def _bad(reason: str, status: int = 400) -> web.Response:
    log.info("bad review", extra={"reason": reason})
    return web.json_response({"error": reason}, status=status)


class Certificates:
    """The TLS context, reloaded when cert-manager rotates the mounted secret."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = Path(cert), Path(key)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.stamp = self._stamp()
        self.context.load_cert_chain(self.cert, self.key)

    def _stamp(self) -> tuple[float, float]:
        return (self.cert.stat().st_mtime, self.key.stat().st_mtime)

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stamp()
            if stamp == self.stamp:
                return False
            # Later handshakes use the new pair; open connections keep theirs.
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            # Mid-rotation the pair can be briefly inconsistent: keep the old one, try again.
            log.warning("certificate reload failed", extra={"reason": str(exc)})
            return False
        self.stamp = stamp
        log.info("certificate reloaded")
        return True


async def serve(
    app: web.Application, host: str, port: int, certs: Certificates, reload_seconds: float = 30.0
) -> None:
    """Serve until SIGTERM or SIGINT, letting in-flight reviews finish."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=certs.context, reuse_address=True)
    await site.start()
    log.info("listening", extra={"address": f"{host}:{port}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), reload_seconds)
        except TimeoutError:
            certs.reload_if_changed()
    await runner.cleanup()
    log.info("stopped")
