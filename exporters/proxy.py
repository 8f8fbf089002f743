"""The proxy mode: forward an engine's API unchanged and measure the requests passing through.

`inferwatch exporter --proxy --upstream http://127.0.0.1:11434 --listen 0.0.0.0:9450` serves
every path except its own `/metrics`, `/healthz` and `/readyz` by forwarding it to the upstream,
byte for byte and streamed; each write waits for the client to drain, so a slow client holds
back the upstream instead of filling memory. Generation requests feed a `measure.Watch`:
what is measured, and how it is normalized, is `measure.py`'s docstring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from inferwatch.exporters.measure import GENERATION_PATHS, ProxyMetrics, Watch

log = logging.getLogger("inferwatch.exporter")

# Requests bodies up to this size are forwarded (prompts with images can be several MB).
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)

# -- forwarding --------------------------------------------------------------------------------


def _request_model(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) and model else None


def _forwarded(headers, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    # A `Connection` header may name more hop-by-hop headers.
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    skip = _HOP_BY_HOP | named | set(drop)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


class Proxy:
    """Forwards every request but the sidecar's own to `upstream`, measuring generations."""

    def __init__(self, upstream: str, engine: str, clock: Callable[[], float] = time.perf_counter):
        self.upstream = upstream.rstrip("/")
        self.metrics = ProxyMetrics(engine)
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            # Streams last as long as generation does; only connecting is bounded.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            # Send exactly the client's headers: no User-Agent, Accept or encoding of our own.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def install(self, app: web.Application) -> None:
        """Route everything the app does not serve itself to the upstream."""

        async def on_startup(_app: web.Application) -> None:
            await self.start()

        async def on_cleanup(_app: web.Application) -> None:
            await self.close()

        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        start = self.clock()
        body = await request.read()
        api = GENERATION_PATHS.get(request.path) if request.method == "POST" else None
        watch = Watch(api, self.metrics, _request_model(body), start) if api else None
        try:
            upstream = await self.session.request(
                request.method,
                self.upstream + request.raw_path,
                headers=_forwarded(request.headers, drop=("host", "content-length")),
                data=body if body else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if watch is not None:
                watch.finish(self.clock(), "error")
            log.warning("proxy upstream unreachable", extra={"url": self.upstream})
            return web.Response(
                status=502,
                text=f"inferwatch proxy: cannot reach the upstream {self.upstream}: "
                f"{type(exc).__name__}: {exc}\n",
            )
        complete = False
        try:
            response, complete = await self._relay(request, upstream, watch)
            return response
        finally:
            # A whole answer frees the connection for the next request; a partial one closes
            # it, which also tells the upstream to stop generating.
            if complete:
                upstream.release()
            else:
                upstream.close()

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, watch: Watch | None
    ) -> tuple[web.StreamResponse, bool]:
        headers = _forwarded(upstream.headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.clear()  # the upstream's headers, not aiohttp's defaults
        response.headers.extend(headers)
        if watch is not None:
            watch.begin(
                upstream.status,
                upstream.headers.get("Content-Type", ""),
                "Content-Encoding" in upstream.headers,
            )
        try:
            await response.prepare(request)
        except (ConnectionError, asyncio.CancelledError):
            if watch is not None:
                watch.finish(self.clock(), "abort")
            raise
        clock = self.clock
        reader = upstream.content
        while True:
            try:
                chunk = await reader.readany()
            except (aiohttp.ClientError, OSError, TimeoutError):
                # The upstream broke mid-answer: the status is sent, so cut the client off too.
                if watch is not None:
                    watch.finish(clock(), "error")
                if request.transport is not None:
                    request.transport.close()
                return response, False
            except asyncio.CancelledError:
                if watch is not None:
                    watch.finish(clock(), "abort")
                raise
            if not chunk:
                break
            if watch is not None:
                watch.feed(chunk, clock())
            try:
                await response.write(chunk)
            except (ConnectionError, asyncio.CancelledError):
                if watch is not None:
                    watch.finish(clock(), "abort")
                raise
        try:
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            if watch is not None:
                watch.finish(clock(), "abort")
            raise
        if watch is not None:
            watch.finish(clock())
        return response, True


def serve_proxy(exporter, proxy: Proxy, host: str, port: int, drain_seconds: float) -> None:
    """Proxy mode: the exporter's own paths, and everything else forwarded to the upstream.

    The scrape path is the same threaded `Exporter` as in scrape mode, run off the event loop.
    """
    from inferwatch.exporters.server import CONTENT_TYPE

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def metrics(request: web.Request) -> web.Response:
        measured = proxy.metrics.result()  # read on the loop, where the watches write
        body = await asyncio.get_running_loop().run_in_executor(
            None, exporter.scrape, exporter.timeout_for(request.headers), [measured]
        )
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        ok, text = await asyncio.get_running_loop().run_in_executor(None, exporter.ready)
        return web.Response(status=200 if ok else 503, text=text)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    proxy.install(app)  # everything else goes to the upstream
    asyncio.run(_run(app, exporter, host, port, drain_seconds))


async def _run(app: web.Application, exporter, host: str, port: int, drain: float) -> None:
    import signal

    # aiohttp waits its shutdown_timeout twice on cleanup (site stop, then runner shutdown).
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=drain / 2, access_log=None)
    await runner.setup()
    await asyncio.get_running_loop().run_in_executor(None, exporter.start)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("listening", extra={"address": f"{host}:{port}", "mode": "proxy"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"seconds": drain})
    await runner.cleanup()
    exporter.close()
    log.info("stopped")
