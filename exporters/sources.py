"""The sidecar's upstreams: an engine's /metrics page and dcgm-exporter's, each normalized."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

from inferwatch import schema
from inferwatch.exporters import registry
from inferwatch.exporters.adapter import Adapter
from inferwatch.exporters.fetch import FetchError, Shared, fetch_json, lines, stream
from inferwatch.exporters.normalize import Context, Normalizer, Result, engine_info

log = logging.getLogger("inferwatch.exporter")

INFO_REFRESH_SECONDS = 300.0
INFO_RETRY_SECONDS = 30.0
INFO_TIMEOUT = 2.0


@dataclass
class Collected:
    """One source's part of a scrape."""

    source: str
    results: list[Result] = field(default_factory=list)
    up: bool = False
    duration: float = 0.0
    errors: int = 0
    error: str | None = None
    raw: str | None = None  # the upstream's page, only when it is passed through


class PageSource:
    """An upstream /metrics page run through an adapter (fixed, or detected from the page).

    Once the adapter is known, the page is normalized as it streams in, so a large page never
    sits in memory whole. Detection (first scrape, or after the page stopped matching) and
    passthrough read the whole page first.
    """

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
        keep_raw: bool = False,
    ):
        self.name = name
        self.url = url
        self.fixed = adapter
        self.candidates = candidates
        self.ctx = ctx
        self.max_bytes = max_bytes
        # Read the GPU figures some engines' pages carry (Triton's), when there is no DCGM.
        self.page_gpus = page_gpus
        self.keep_raw = keep_raw
        self._normalizer: Normalizer | None = Normalizer(adapter, ctx) if adapter else None
        self._gpu: Normalizer | None = None
        self._shared = Shared()
        self._was_up: bool | None = None

    @property
    def adapter(self) -> Adapter | None:
        return self._normalizer.adapter if self._normalizer else self.fixed

    def set_context(self, ctx: Context) -> None:
        self.ctx = ctx
        if self._normalizer is not None:
            self._normalizer = self._normalizer.with_context(ctx)

    def collect(self, timeout: float) -> Collected:
        """Fetch and normalize, within `timeout` seconds; concurrent callers share one fetch."""
        return self._shared.run(lambda: self._collect(timeout))

    def _collect(self, timeout: float) -> Collected:
        start = time.monotonic()
        out = Collected(self.name)
        try:
            self._fetch_and_normalize(start + timeout, out)
        except FetchError as exc:
            out.results.clear()
            out.up, out.error = False, str(exc)
        out.duration = time.monotonic() - start
        self._log_transition(out)
        return out

    def _fetch_and_normalize(self, deadline: float, out: Collected) -> None:
        normalizer = self._normalizer
        chunks = stream(self.url, deadline, self.max_bytes)
        if normalizer is not None and not self.keep_raw and not self.page_gpus:
            result = normalizer.normalize_lines(lines(chunks))
        else:
            kept: list[str] = []
            for _line in lines(chunks, kept):
                pass
            text = "".join(kept)
            if self.keep_raw:
                out.raw = text
            if normalizer is None:
                try:
                    adapter = registry.detect(text, self.candidates)
                except registry.DetectionError as exc:
                    out.error = str(exc)
                    return
                normalizer = self._normalizer = Normalizer(adapter, self.ctx)
                log.info("detected", extra={"source": self.name, "engine": adapter.name})
            result = normalizer.normalize(text)
            self._page_gpus(normalizer.adapter, text, out)
        out.errors = result.errors
        if result.matched == 0:
            out.error = f"no {normalizer.adapter.name} metrics on the page"
            if self.fixed is None:
                self._normalizer = None  # the engine changed: detect again next time
            out.results.clear()
            return
        engine_info(result, normalizer.adapter, self.ctx)
        out.results.insert(0, result)
        out.up = True

    def _page_gpus(self, adapter: Adapter, text: str, out: Collected) -> None:
        gpu = registry.PAGE_GPU_ADAPTERS.get(adapter.name) if self.page_gpus else None
        if gpu is None:
            return
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


class EngineInfo:
    """Keeps the engine's info endpoints (model, version, configuration) fresh, off the scrape."""

    def __init__(self, source, base_url: str, model: str | None):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.model_flag = model
        self._next = 0.0
        self._lock = threading.Lock()
        self._running = False

    def due(self) -> bool:
        adapter = self.source.adapter
        return bool(adapter and adapter.info_endpoints) and time.monotonic() >= self._next

    def maybe_refresh(self) -> None:
        """Refresh in a background thread when due; never blocks a scrape."""
        with self._lock:
            if self._running or not self.due():
                return
            self._running = True
        threading.Thread(target=self.refresh, name="engine-info", daemon=True).start()

    def refresh(self) -> None:
        adapter = self.source.adapter
        try:
            if adapter is not None:
                self._refresh(adapter)
        finally:
            with self._lock:
                self._running = False

    def _refresh(self, adapter: Adapter) -> None:
        model, info, complete = None, {}, True
        for endpoint in adapter.info_endpoints:
            doc = fetch_json(self.base_url + endpoint.path, timeout=INFO_TIMEOUT)
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
