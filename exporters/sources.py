"""The sidecar's upstreams: an engine's /metrics page and dcgm-exporter's, each normalized."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from inferwatch import schema
from inferwatch.exporters import registry
from inferwatch.exporters.adapter import Adapter
from inferwatch.exporters.fetch import Page, Shared, fetch_json, fetch_page
from inferwatch.exporters.normalize import Context, Normalizer, Result, engine_info

log = logging.getLogger("inferwatch.exporter")

INFO_REFRESH_SECONDS = 300.0
INFO_RETRY_SECONDS = 30.0


@dataclass
class Collected:
    """One source's part of a scrape."""

    source: str
    results: list[Result] = field(default_factory=list)
    up: bool = False
    duration: float = 0.0
    errors: int = 0
    error: str | None = None
    page: Page | None = None


class PageSource:
    """An upstream /metrics page run through an adapter (fixed, or detected from the page)."""

    def __init__(
        self,
        name: str,
        url: str,
        adapter: Adapter | None,
        ctx: Context,
        *,
        max_bytes: int,
        candidates: tuple[Adapter, ...] = registry.ENGINE_ADAPTERS,
        page_gpus: bool = False,
    ):
        self.name = name
        # Read the GPU figures some engines' pages carry (Triton's), when there is no DCGM.
        self.page_gpus = page_gpus
        self._gpu: Normalizer | None = None
        self.url = url
        self.fixed = adapter
        self.candidates = candidates
        self.ctx = ctx
        self.max_bytes = max_bytes
        self._normalizer: Normalizer | None = Normalizer(adapter, ctx) if adapter else None
        self._shared = Shared()
        self._was_up: bool | None = None

    @property
    def adapter(self) -> Adapter | None:
        return self._normalizer.adapter if self._normalizer else self.fixed

    def set_context(self, ctx: Context) -> None:
        self.ctx = ctx
        if self._normalizer is not None:
            self._normalizer = self._normalizer.with_context(ctx)

    async def collect(self, session: aiohttp.ClientSession, timeout: float) -> Collected:
        return await self._shared.run(lambda: self._collect(session, timeout))  # type: ignore[return-value]

    async def _collect(self, session: aiohttp.ClientSession, timeout: float) -> Collected:
        start = time.perf_counter()
        page = await fetch_page(session, self.url, timeout, self.max_bytes)
        out = Collected(self.name, page=page)
        if page.text is None:
            out.error = page.error
        else:
            self._normalize(page.text, out)
        out.duration = time.perf_counter() - start
        self._log_transition(out)
        return out

    def _normalize(self, text: str, out: Collected) -> None:
        normalizer = self._normalizer
        if normalizer is None or (self.fixed is None and not _has_prefix(text, normalizer)):
            try:
                adapter = registry.detect(text, self.candidates)
            except registry.DetectionError as exc:
                out.error = str(exc)
                return
            normalizer = self._normalizer = Normalizer(adapter, self.ctx)
            log.info("detected", extra={"source": self.name, "engine": adapter.name})
        result = normalizer.normalize(text)
        out.errors = result.errors
        if result.samples == 0 and not _has_prefix(text, normalizer):
            out.error = f"no {normalizer.adapter.name} metrics on the page"
            return
        engine_info(result, normalizer.adapter, self.ctx)
        out.results.append(result)
        out.up = True
        gpu = registry.PAGE_GPU_ADAPTERS.get(normalizer.adapter.name) if self.page_gpus else None
        if gpu is not None:
            if self._gpu is None or self._gpu.adapter is not gpu:
                # The engine's own page shows only the GPUs its container was given: ours.
                local = dataclasses.replace(self.ctx, pod=None, namespace=None, gpu_uuids=None)
                self._gpu = Normalizer(gpu, local)
            out.results.append(self._gpu.normalize(text))

    def _log_transition(self, out: Collected) -> None:
        if out.up != self._was_up:
            level = logging.INFO if out.up else logging.WARNING
            log.log(
                level,
                "upstream up" if out.up else "upstream down",
                extra={
                    "source": self.name,
                    "url": self.url,
                    "reason": out.error,
                    "duration_ms": round(out.duration * 1000, 1),
                },
            )
            self._was_up = out.up
        if out.errors:
            log.debug("skipped lines", extra={"source": self.name, "lines": out.errors})


def _has_prefix(text: str, normalizer: Normalizer) -> bool:
    return any(f"\n{p}" in text or text.startswith(p) for p in normalizer.adapter.detect)


class EngineInfo:
    """Keeps the engine's info endpoints (model, version, configuration) fresh, off the scrape."""

    def __init__(self, source: PageSource, base_url: str, model: str | None):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.model_flag = model
        self._next = 0.0
        self._task: asyncio.Task | None = None

    def maybe_refresh(self, session: aiohttp.ClientSession) -> None:
        adapter = self.source.adapter
        if adapter is None or not adapter.info_endpoints:
            return
        if time.monotonic() < self._next or (self._task and not self._task.done()):
            return
        self._task = asyncio.ensure_future(self._refresh(session, adapter))

    async def _refresh(self, session: aiohttp.ClientSession, adapter: Adapter) -> None:
        model, info, complete = None, {}, True
        for endpoint in adapter.info_endpoints:
            doc = await fetch_json(session, self.base_url + endpoint.path, timeout=2.0)
            if doc is None:
                complete = False
                continue
            found_model, found = endpoint.parse(doc)
            model = model or found_model
            info.update(found)
        self._next = time.monotonic() + (INFO_REFRESH_SECONDS if complete else INFO_RETRY_SECONDS)
        ctx = dataclasses.replace(
            self.source.ctx,
            model=self.model_flag or model or self.source.ctx.model,
            info={k: v for k, v in info.items() if k in schema.ENGINE_INFO_LABELS},
        )
        if ctx != self.source.ctx:
            log.info(
                "engine info", extra={"source": self.source.name, "model": ctx.model, **ctx.info}
            )
            self.source.set_context(ctx)


def metrics_url(upstream: str) -> tuple[str, str]:
    """(base URL, metrics URL) from what the user gave: a base URL or the /metrics URL."""
    upstream = upstream.rstrip("/")
    if "://" not in upstream:
        upstream = "http://" + upstream
    scheme_host, _, path = upstream.partition("://")
    host, slash, rest = path.partition("/")
    if slash and rest:
        return f"{scheme_host}://{host}", upstream
    return upstream, upstream + "/metrics"
