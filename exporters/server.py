"""The sidecar's HTTP server: /metrics (normalized), /healthz, /readyz.

Each scrape fetches the engine and DCGM in parallel, within a deadline below Prometheus' own
scrape timeout; scrapes that arrive while one is running share its fetches. A failed upstream
shows as `inferwatch_exporter_upstream_up{source} 0`, never as a failed scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from inferwatch import __version__
from inferwatch.exporters import registry
from inferwatch.exporters.adapter import Adapter
from inferwatch.exporters.normalize import Context, render
from inferwatch.exporters.ollama import OllamaSource
from inferwatch.exporters.proxy import MAX_REQUEST_BYTES, Proxy, proxy_engine
from inferwatch.exporters.sources import Collected, EngineInfo, PageSource, metrics_url

log = logging.getLogger("inferwatch.exporter")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Prometheus tells us its scrape timeout; answer this much before it gives up.
DEADLINE_MARGIN = 0.5
MIN_TIMEOUT = 0.2


@dataclass(frozen=True)
class Settings:
    upstream: str | None
    engine: str = "auto"
    dcgm: str | None = None
    model: str | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = 9450
    timeout: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    passthrough: bool = False
    drain_seconds: float = 5.0
    proxy: bool = False  # forward the upstream's API and measure it (see proxy.py)


class Exporter:
    """Owns the upstream sources and the exporter's own health figures."""

    def __init__(self, settings: Settings, ctx: Context):
        self.settings = settings
        self.sources: list[PageSource] = []
        self.engine_info: EngineInfo | None = None
        self.parse_errors: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.last: dict[str, Collected] = {}
        self.proxy: Proxy | None = None
        if settings.upstream:
            adapter: Adapter | None = (
                None if settings.engine == "auto" else registry.get(settings.engine)
            )
            base, url = metrics_url(settings.upstream)
            if settings.proxy:
                self.proxy = Proxy(base, proxy_engine(settings.engine))
            engine: PageSource | OllamaSource
            name = self.proxy.metrics.engine if self.proxy is not None else settings.engine
            if name == "ollama":
                engine = OllamaSource("engine", base, ctx)  # Ollama has no /metrics page
            else:
                engine = PageSource(
                    "engine",
                    url,
                    adapter,
                    ctx,
                    max_bytes=settings.max_body_bytes,
                    page_gpus=not settings.dcgm,
                )
            self.sources.append(engine)
            self.engine_info = EngineInfo(engine, base, settings.model)  # type: ignore[arg-type]
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

    async def start(self) -> None:
        # One connection per upstream is plenty; keep-alive spares a handshake per scrape.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=4, force_close=False),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def timeout_for(self, request: web.Request | None) -> float:
        timeout = self.settings.timeout
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds") if request else None
        if header:
            with contextlib.suppress(ValueError):
                timeout = min(timeout, float(header) - DEADLINE_MARGIN)
        return max(timeout, MIN_TIMEOUT)

    async def scrape(self, timeout: float) -> str:
        assert self.session is not None
        if self.engine_info is not None:
            self.engine_info.maybe_refresh(self.session)
        collected = await asyncio.gather(
            *(source.collect(self.session, timeout) for source in self.sources)
        )
        for c in collected:
            self.last[c.source] = c
            self.parse_errors[c.source] += c.errors
        ctx = self.sources[0].ctx if self.sources else Context()
        results = [r for c in collected for r in c.results]
        if self.proxy is not None:
            results.append(self.proxy.metrics.result())
        body = render(results, ctx, self._health(collected))
        if self.settings.passthrough:
            body += _passthrough(collected)
        return body

    def _health(self, collected: list[Collected]) -> str:
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
                for name, count in self.parse_errors.items()
            ),
            "# HELP inferwatch_exporter_build_info inferwatch build information (value 1).",
            "# TYPE inferwatch_exporter_build_info gauge",
            f'inferwatch_exporter_build_info{{version="{__version__}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _passthrough(collected: list[Collected]) -> str:
    """The engine's own page, verbatim, after ours (text format 0.0.4 keeps colon names)."""
    for c in collected:
        if c.source == "engine" and c.up and c.page is not None and c.page.text:
            text = c.page.text.replace("\n# EOF", "\n")
            return text if text.endswith("\n") else text + "\n"
    return ""


def build_app(exporter: Exporter) -> web.Application:
    # In proxy mode request bodies are forwarded, and prompts can be large.
    app = web.Application(client_max_size=MAX_REQUEST_BYTES if exporter.proxy else 1024**2)

    async def metrics(request: web.Request) -> web.Response:
        start = time.perf_counter()
        body = await exporter.scrape(exporter.timeout_for(request))
        log.debug("scrape", extra={"duration_ms": round((time.perf_counter() - start) * 1000, 1)})
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        engine = next((s for s in exporter.sources if s.name == "engine"), None)
        if engine is None:
            return web.Response(text="ready (no engine upstream)\n")
        assert exporter.session is not None
        c = await engine.collect(exporter.session, min(exporter.settings.timeout, 2.0))
        if c.up:
            return web.Response(
                text=f"ready: {engine.adapter.name if engine.adapter else ''} at {engine.url}\n"
            )
        return web.Response(status=503, text=f"not ready: {engine.url}: {c.error}\n")

    async def index(_request: web.Request) -> web.Response:
        lines = [
            f"inferwatch exporter {__version__}",
            "",
            "/metrics  normalized metrics",
            "/healthz  alive",
            "/readyz   engine reachable",
            "",
        ]
        lines += [f"upstream {s.name}: {s.url}" for s in exporter.sources]
        return web.Response(text="\n".join(lines) + "\n")

    async def on_startup(_app: web.Application) -> None:
        await exporter.start()

    async def on_cleanup(_app: web.Application) -> None:
        await exporter.close()

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if exporter.proxy is None:
        app.router.add_get("/", index)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    if exporter.proxy is not None:
        exporter.proxy.install(app)  # everything else goes to the upstream
    return app


async def serve(app: web.Application, host: str, port: int, drain_seconds: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and let in-flight scrapes finish."""
    # aiohttp waits up to shutdown_timeout for in-flight handlers, then up to shutdown_timeout
    # again before cancelling them: half the drain time each keeps the exit within it, and a
    # slow scrape still has the whole drain time to finish.
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=drain_seconds / 2, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("listening", extra={"address": f"{host}:{port}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"seconds": drain_seconds})
    await runner.cleanup()
    log.info("stopped")
