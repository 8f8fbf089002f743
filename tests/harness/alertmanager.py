"""A real Alertmanager (Debian's `prometheus-alertmanager`) and a webhook receiver to assert on.

    hook = WebhookReceiver().start()
    am = Alertmanager(tmp_path, webhook_url=hook.url).start()
    am.post_alert({"alertname": "KVCacheFull", "severity": "page"})
    (notification,) = hook.wait_for(lambda alerts: alerts, timeout=10)

Alertmanager runs on loopback with clustering off (`--cluster.listen-address=`) and groups by
`alertname` with a near-zero `group_wait`, so a notification follows an alert within a second.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_tool
from tests.harness import loopback, procs


class WebhookReceiver:
    """An HTTP server in a thread that records Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"unparsed": body.decode(errors="replace")}
                with receiver._lock:
                    receiver.notifications.append(doc)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass  # the test output is no place for an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.notifications.clear()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far, in order."""
        with self._lock:
            return [a for n in self.notifications for a in n.get("alerts", [])]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until `predicate(alerts())` is true; the alerts then."""
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts()
            if predicate(alerts):
                return alerts
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"webhook: condition not met after {timeout:.0f}s; received {alerts!r}"
                )
            time.sleep(0.1)


def webhook_config(webhook_url: str, group_by: tuple[str, ...] = ("alertname",)) -> dict:
    """An Alertmanager configuration that sends every alert to one webhook, without delay."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": list(group_by),
            "group_wait": "100ms",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "webhook",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }


class Alertmanager:
    """One Alertmanager server on loopback with its own storage and configuration."""

    def __init__(
        self,
        workdir: Path,
        *,
        webhook_url: str | None = None,
        config: Mapping[str, Any] | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        if config is None and webhook_url is None:
            raise ValueError("give webhook_url or a full config")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config) if config is not None else webhook_config(webhook_url or "")
        self.config_path = self.workdir / "alertmanager.yml"
        self.storage = self.workdir / "data"
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.proc: procs.Proc | None = None

    def start(self, timeout: float = 30.0) -> Alertmanager:
        """Start and wait for /-/ready. `port` and `url` are final once this returns."""
        binary = require_tool("prometheus-alertmanager")
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.storage.mkdir(parents=True, exist_ok=True)

        def launch(port: int) -> procs.Proc:
            self.port, self.url = port, f"http://127.0.0.1:{port}"
            args = [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: a single, private instance
                "--log.level=info",
                *self.extra_args,
            ]
            return procs.start(
                args,
                name=f"alertmanager-{port}",
                workdir=self.workdir,
                ready_url=f"{self.url}/-/ready",
                ready_timeout=timeout,
            )

        self.proc = procs.on_free_port(launch, first=self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with loopback.urlopen(request, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode(errors="replace").strip()
            raise RuntimeError(
                f"alertmanager {method} {path} -> HTTP {exc.code}: {reason}"
            ) from None
        return json.loads(raw) if raw.strip() else None

    def post_alert(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        *,
        duration: timedelta = timedelta(hours=1),
    ) -> None:
        """Send one firing alert through the v2 API, as Prometheus would."""
        now = datetime.now(UTC)
        self._request(
            "POST",
            "/api/v2/alerts",
            [
                {
                    "labels": dict(labels),
                    "annotations": dict(annotations or {}),
                    "startsAt": now.isoformat(),
                    "endsAt": (now + duration).isoformat(),
                    "generatorURL": "http://inferwatch.test/graph",
                }
            ],
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds now (v2 API)."""
        return self._request("GET", "/api/v2/alerts")

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/api/v2/status")
