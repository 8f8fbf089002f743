"""`Figures` of one engine, sampled straight from its `/metrics` (no Prometheus).

The page is fetched every `interval` for `window` through the sidecar's own code (fetch,
engine detection, the adapters' normalizer, the engine's info endpoints), and the normalized
samples are reduced as Prometheus would: counters by their increase (resets handled),
histograms by their bucket increases, gauges read once per page. The per-page series gives the
same relation points as Prometheus' steps, each over one interval.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from inferwatch.alerts import promql
from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Result, parse_labels
from inferwatch.slo import queries
from inferwatch.slo.figures import (
    Figures,
    Headline,
    Point,
    Stat,
    Target,
    counter_increase,
    histogram_quantile,
    merge_buckets,
    parse_le,
)

MAX_PAGE_BYTES = 16 * 1024 * 1024
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_UNESCAPE = re.compile(r"\\(.)")


class UpstreamError(RuntimeError):
    """The engine's page could not be read at all; the message says why."""


@dataclass
class Page:
    t: float
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_samples(results: list[Result]) -> list[tuple[str, dict[str, str], float]]:
    """Normalized samples as (name, labels, value)."""
    out = []
    for result in results:
        for text, value in result.values().items():
            m = _SAMPLE.match(text)
            if m is None:
                continue
            labels = parse_labels(m.group(2)) if m.group(2) else {}
            out.append((m.group(1), {k: _unescape(v) for k, v in (labels or {}).items()}, value))
    return out


def _window_text(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


def sample_pages(
    upstream: str,
    window: float,
    interval: float,
    *,
    dcgm: str | None = None,
    engine: str = "auto",
    model: str | None = None,
    timeout: float = 5.0,
    on_page: Callable[[int, int], None] | None = None,
) -> tuple[list[Page], str, str | None, list[str]]:
    """Fetch the pages: (pages, engine name, model, notes). UpstreamError when the first
    fetch fails, so a wrong URL is reported at once."""
    from inferwatch.exporters.identity import context_from_env
    from inferwatch.exporters.sources import EngineInfo, PageSource, metrics_url

    # The pod and its GPUs as the sidecar would see them (POD_NAME, POD_NAMESPACE, GPU UUIDs),
    # so a shared dcgm-exporter's other GPUs are not judged as this engine's.
    ctx = context_from_env(model=model)
    base, url = metrics_url(upstream)
    adapter = None if engine == "auto" else registry.get(engine)
    source = PageSource("engine", url, adapter, ctx, max_bytes=MAX_PAGE_BYTES, page_gpus=not dcgm)
    gpu_source = None
    if dcgm:
        gpu_source = PageSource(
            "dcgm",
            metrics_url(dcgm)[1],
            registry.get("dcgm"),
            ctx,
            max_bytes=MAX_PAGE_BYTES,
            candidates=registry.GPU_ADAPTERS,
        )
    notes: list[str] = []
    pages: list[Page] = []
    count = max(2, round(window / interval) + 1)
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        got = source.collect(timeout)
        if not got.up:
            if i == 0:
                raise UpstreamError(f"cannot read {url}: {got.error}")
            notes.append(f"page {i + 1} of {url} failed ({got.error}); skipped")
            continue
        if i == 0:
            # The engine's /version, /v1/models or /info: stated configuration, before reducing.
            EngineInfo(source, base, model).refresh()
        results = list(got.results)
        if gpu_source is not None:
            gpu = gpu_source.collect(timeout)
            if gpu.up:
                results += gpu.results
            elif i == 0:
                notes.append(f"dcgm-exporter at {dcgm} could not be read ({gpu.error})")
        pages.append(Page(time.time(), parse_samples(results)))
        if on_page is not None:
            on_page(i + 1, count)
    name = source.adapter.name if source.adapter else "unknown"
    return pages, name, source.ctx.model, notes


def reduce(
    pages: list[Page],
    engine: str,
    model: str | None,
    origin: str,
    headline: Headline | None,
    namespace: str | None = None,
    deployment: str | None = None,
    notes: list[str] | None = None,
) -> Figures:
    """The window's figures from the pages, as Prometheus would compute them."""
    if len(pages) < 2:
        raise UpstreamError("fewer than two pages: nothing to compare")
    window = pages[-1].t - pages[0].t
    step = (window / (len(pages) - 1)) if len(pages) > 1 else window
    # (sample name, labels) -> page index -> value
    counters: dict[tuple[str, tuple], dict[int, float]] = defaultdict(dict)
    gauges_per_page: list[dict[str, float]] = []
    info: dict[str, str] = {}
    gpu_model = None
    gpu_total = None
    for index, page in enumerate(pages):
        per_page: dict[str, list[float]] = defaultdict(list)
        gpu_used: dict[tuple, float] = {}
        gpu_free: dict[tuple, float] = {}
        for name, labels, value in page.samples:
            if name == "llm_engine_info":
                info = {k: v for k, v in labels.items()}
                model = model or labels.get("model")
            elif name.endswith(("_total", "_bucket", "_count", "_sum")):
                counters[(name, tuple(sorted(labels.items())))][index] = value
            elif name == "llm_kv_cache_usage_ratio":
                per_page["kv_cache_usage"].append(value)
            elif name == "llm_requests_running":
                per_page["requests_running"].append(value)
            elif name == "llm_requests_waiting":
                per_page["requests_waiting"].append(value)
            elif name == "llm_gpu_utilization_ratio":
                per_page["gpu_utilization"].append(value)
            elif name in ("llm_gpu_memory_used_bytes", "llm_gpu_memory_free_bytes"):
                gpu = (labels.get("gpu"), labels.get("gpu_uuid"), labels.get("gpu_instance"))
                (gpu_used if name.endswith("used_bytes") else gpu_free)[gpu] = value
                gpu_model = labels.get("gpu_model") or gpu_model
        values: dict[str, float] = {}
        if per_page["kv_cache_usage"]:
            values["kv_cache_usage"] = max(per_page["kv_cache_usage"])
        for name in ("requests_running", "requests_waiting"):
            if per_page[name]:
                values[name] = math.fsum(per_page[name])  # one pod: its ranks summed
        if per_page["gpu_utilization"]:
            values["gpu_utilization"] = math.fsum(per_page["gpu_utilization"]) / len(
                per_page["gpu_utilization"]
            )
        totals = {g: gpu_used[g] + gpu_free[g] for g in gpu_free if g in gpu_used}
        if gpu_free:
            values["gpu_memory_free_bytes"] = min(gpu_free.values())
        if totals:
            values["gpu_memory_free_ratio"] = min(
                gpu_free[g] / t for g, t in totals.items() if t > 0
            )
            gpu_total = max(totals.values())
        gauges_per_page.append(values)

    fig = Figures(
        target=Target(namespace, deployment, engine, model),
        source="upstream",
        window=_window_text(window),
        step=_window_text(step),
        origin=origin,
        info=info,
        gpu_model=gpu_model,
        gpu_total_bytes=gpu_total,
        replicas=Stat.of([1.0] * len(pages)),
        replicas_now=1,
        headline=headline,
        points=len(pages),
        notes=list(notes or []),
    )
    families = {queries.FINISHED: "finished"} | {f: k for k, f in queries.COUNTERS.items()}
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    histogram_of = {f + "_bucket": k for k, f in queries.HISTOGRAMS.items()}
    for (name, labels), series in counters.items():
        grown = counter_increase([series[i] for i in sorted(series)])
        label_map = dict(labels)
        if name == queries.FINISHED:
            reason = label_map.get("reason", "")
            fig.finished[reason] = fig.finished.get(reason, 0.0) + grown
        elif name in families:
            key = families[name]
            fig.counters[key] = fig.counters.get(key, 0.0) + grown
        elif name in histogram_of:
            buckets[histogram_of[name]].append((parse_le(label_map.get("le", "+Inf")), grown))
    fig.buckets = {k: merge_buckets(v) for k, v in buckets.items()}
    for name in queries.GAUGES:
        stat = Stat.of(p[name] for p in gauges_per_page if name in p)
        if stat is not None:
            fig.gauges[name] = stat
    fig.series = _points(pages, gauges_per_page, headline, counters)
    promql.validate_duration(fig.window)
    return fig


def _points(
    pages: list[Page],
    gauges: list[dict[str, float]],
    headline: Headline | None,
    counters: dict[tuple[str, tuple], dict[int, float]],
) -> list[Point]:
    """One point per interval: its request rate and latency quantile, the queue at its end."""
    finished = [k for k in counters if k[0] == queries.FINISHED]
    bucket_name = queries.HISTOGRAMS[headline.histogram] + "_bucket" if headline else None
    bucket_keys = [k for k in counters if k[0] == bucket_name]
    out = []
    for i in range(1, len(pages)):
        dt = pages[i].t - pages[i - 1].t
        done = math.fsum(_grown(counters[k], i) for k in finished)
        latency = None
        if headline is not None and bucket_keys:
            pairs = merge_buckets(
                (parse_le(dict(k[1]).get("le", "+Inf")), _grown(counters[k], i))
                for k in bucket_keys
            )
            latency = histogram_quantile(headline.quantile, pairs)
        out.append(
            Point(
                t=pages[i].t,
                replicas=1.0,
                request_rate=done / dt if dt > 0 and finished else None,
                queue_per_pod=gauges[i].get("requests_waiting"),
                latency=latency,
            )
        )
    return out


def _grown(values: dict[int, float], i: int) -> float:
    """A counter's increase from page i-1 to page i (0 when either page lacks it)."""
    if i - 1 not in values or i not in values:
        return 0.0
    return counter_increase([values[i - 1], values[i]])
