"""The sidecar's scrape path: /metrics (normalized), /healthz, /readyz.

Each scrape fetches the engine and DCGM in parallel (threads), within a deadline below
Prometheus' own scrape timeout; scrapes that arrive while one is running share its fetches.
A failed upstream shows as `inferwatch_exporter_upstream_up{source} 0`, never as a failed
scrape. The HTTP server is the standard library's: one thread per connection is plenty for a
Prometheus or two and the kubelet's probes, and keeps the sidecar small. Proxy mode (see
`proxy.py`) serves the same `Exporter` from an aiohttp app instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from inferwatch import __version__
from inferwatch.exporters import registry
from inferwatch.exporters.adapter import Adapter
from inferwatch.exporters.normalize import Context, Result, render
from inferwatch.exporters.sources import Collected, EngineInfo, PageSource, metrics_url

log = logging.getLogger("inferwatch.exporter")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Prometheus tells us its scrape timeout; answer this much before it gives up.
DEADLINE_MARGIN = 0.5
MIN_TIMEOUT = 0.2
READY_TIMEOUT = 2.0
# Idle keep-alive connections are closed after this, freeing their thread.
IDLE_CONNECTION_SECONDS = 120.0


@dataclass(frozen=True)
class Settings:
    upstream: str | None
    engine: str = "auto"
    dcgm: str | None = None
    model: str | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = 9450
    timeout: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024
    passthrough: bool = False
    drain_seconds: float = 5.0
    proxy: bool = False  # forward the upstream's API and measure it (see proxy.py)


class Exporter:
    """Owns the upstream sources and the exporter's own health figures."""

    def __init__(self, settings: Settings, ctx: Context):
        self.settings = settings
        self.sources: list = []
        self.engine: PageSource | None = None
        self.engine_info: EngineInfo | None = None
        self.parse_errors: dict[str, int] = {}
        if settings.upstream:
            base, url = metrics_url(settings.upstream)
            self.engine = self._engine_source(base, url, ctx)
            self.sources.append(self.engine)
            self.engine_info = EngineInfo(self.engine, base, settings.model)
        if settings.dcgm:
            _base, url = metrics_url(settings.dcgm)
            self.sources.append(
                PageSource(
                    "dcgm",
                    url,
                    registry.get("dcgm"),
                    ctx,
                    max_bytes=settings.max_body_bytes,
                    candidates=registry.GPU_ADAPTERS,
                )
            )
        for source in self.sources:
            self.parse_errors[source.name] = 0
        # Each scrape collects its first source in its own thread and the others here; the
        # pool is sized so concurrent scrapes never queue behind one another.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fetch")
        self._errors_lock = threading.Lock()

    def _engine_source(self, base: str, url: str, ctx: Context):
        s = self.settings
        adapter: Adapter | None = None if s.engine == "auto" else registry.get(s.engine)
        if (adapter and adapter.name == "ollama") or (s.proxy and s.engine == "auto"):
            from inferwatch.exporters.ollama import OllamaSource

            return OllamaSource("engine", base, ctx)  # Ollama has no /metrics page
        return PageSource(
            "engine",
            url,
            adapter,
            ctx,
            max_bytes=s.max_body_bytes,
            page_gpus=not s.dcgm,
            keep_raw=s.passthrough,
        )

    def start(self) -> None:
        """Learn the engine's model and configuration before the first scrape, briefly."""
        if self.engine_info is not None and self.engine_info.due():
            self.engine_info.refresh()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def timeout_for(self, headers: Mapping[str, str] | None) -> float:
        timeout = self.settings.timeout
        header = headers.get("X-Prometheus-Scrape-Timeout-Seconds") if headers else None
        if header:
            with contextlib.suppress(ValueError):
                timeout = min(timeout, float(header) - DEADLINE_MARGIN)
        return max(timeout, MIN_TIMEOUT)

    def scrape(self, timeout: float, extra: list[Result] | None = None) -> str:
        if self.engine_info is not None:
            self.engine_info.maybe_refresh()
        futures = [self._pool.submit(source.collect, timeout) for source in self.sources[1:]]
        collected: list[Collected] = [s.collect(timeout) for s in self.sources[:1]]
        collected += [f.result() for f in futures]
        with self._errors_lock:
            for c in collected:
                self.parse_errors[c.source] += c.errors
        ctx = self.sources[0].ctx if self.sources else Context()
        results = [r for c in collected for r in c.results] + list(extra or ())
        body = render(results, ctx, self._health(collected))
        if self.settings.passthrough:
            body += _passthrough(collected)
        return body

    def ready(self) -> tuple[bool, str]:
        engine = self.engine
        if engine is None:
            return True, "ready (no engine upstream)\n"
        c = engine.collect(min(self.settings.timeout, READY_TIMEOUT))
        if c.up:
            name = engine.adapter.name if engine.adapter else ""
            return True, f"ready: {name} at {engine.url}\n"
        return False, f"not ready: {engine.url}: {c.error}\n"

    def index(self) -> str:
        lines = [
            f"inferwatch exporter {__version__}",
            "",
            "/metrics  normalized metrics",
            "/healthz  alive",
            "/readyz   engine reachable",
            "",
        ]
        lines += [f"upstream {s.name}: {s.url}" for s in self.sources]
        return "\n".join(lines) + "\n"

    def _health(self, collected: list[Collected]) -> str:
        with self._errors_lock:
            errors = dict(self.parse_errors)
        lines = [
            "# HELP inferwatch_exporter_upstream_up 1 if the last fetch of this source "
            "succeeded and parsed, else 0.",
            "# TYPE inferwatch_exporter_upstream_up gauge",
            *(
                f'inferwatch_exporter_upstream_up{{source="{c.source}"}} {int(c.up)}'
                for c in collected
            ),
            "# HELP inferwatch_exporter_scrape_duration_seconds Time the last fetch and "
            "normalization of this source took.",
            "# TYPE inferwatch_exporter_scrape_duration_seconds gauge",
            *(
                f'inferwatch_exporter_scrape_duration_seconds{{source="{c.source}"}} '
                f"{c.duration:.6f}"
                for c in collected
            ),
            "# HELP inferwatch_exporter_parse_errors_total Lines of this source skipped "
            "because they could not be parsed.",
            "# TYPE inferwatch_exporter_parse_errors_total counter",
            *(
                f'inferwatch_exporter_parse_errors_total{{source="{name}"}} {count}'
                for name, count in errors.items()
            ),
            "# HELP inferwatch_exporter_build_info inferwatch build information (value 1).",
            "# TYPE inferwatch_exporter_build_info gauge",
            f'inferwatch_exporter_build_info{{version="{__version__}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _passthrough(collected: list[Collected]) -> str:
    """The engine's own page, verbatim, after ours (text format 0.0.4 keeps colon names)."""
    for c in collected:
        if c.source == "engine" and c.up and c.raw:
            text = c.raw.replace("\n# EOF", "\n")
            return text if text.endswith("\n") else text + "\n"
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    timeout = IDLE_CONNECTION_SECONDS
    server: _Server

    def do_GET(self) -> None:
        exporter = self.server.exporter
        path = self.path.split("?", 1)[0]
        routes: dict[str, Callable[[], tuple[int, str, str]]] = {
            "/metrics": lambda: (
                200,
                CONTENT_TYPE,
                exporter.scrape(exporter.timeout_for(self.headers)),
            ),
            "/healthz": lambda: (200, "text/plain; charset=utf-8", "ok\n"),
            "/readyz": lambda: _ready(exporter),
            "/": lambda: (200, "text/plain; charset=utf-8", exporter.index()),
        }
        route = routes.get(path)
        if route is None:
            self._send(404, "text/plain; charset=utf-8", f"not found: {path}\n")
            return
        with self.server.tracking():
            try:
                status, ctype, body = route()
            except Exception:
                log.exception("request failed", extra={"path": path})
                status, ctype, body = 500, "text/plain; charset=utf-8", "internal error\n"
            self._send(status, ctype, body)

    def _send(self, status: int, ctype: str, body: str) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away", extra={"path": self.path})

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http", extra={"request": format % args})


def _ready(exporter: Exporter) -> tuple[int, str, str]:
    ok, text = exporter.ready()
    return (200 if ok else 503), "text/plain; charset=utf-8", text


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # drained by `tracking`, not by joining every keep-alive thread
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exporter: Exporter):
        super().__init__(address, _Handler)
        self.exporter = exporter
        self._active = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def tracking(self):
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def drain(self, seconds: float) -> bool:
        """Wait for requests in flight to be answered; False if some are still running."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout=seconds)


def serve(exporter: Exporter, host: str, port: int, drain_seconds: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and let requests in flight finish."""
    server = _Server((host, port), exporter)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    exporter.start()
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("listening", extra={"address": f"{host}:{port}"})
    while not stop.wait(1.0):
        pass
    log.info("draining", extra={"seconds": drain_seconds})
    server.shutdown()  # no new connections; requests in flight go on
    drained = server.drain(drain_seconds)
    server.server_close()
    exporter.close()
    if not drained:
        # A request still waits on an upstream: its fetch threads must not hold the exit.
        log.warning("drain timed out", extra={"seconds": drain_seconds})
        logging.shutdown()
        os._exit(0)
    log.info("stopped")
