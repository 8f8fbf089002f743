"""The live parts of bench/exporter.py: the real exporter process and a real Prometheus."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.pages import vllm_page
from tests.harness.exporter import ExporterProcess
from tests.harness.pages import PageServer
from tests.harness.prometheus import Prometheus, scrape_job

SCRAPES = 100


def part_rss(page: str, workdir: Path) -> None:
    with PageServer(page) as server:
        exporter = ExporterProcess(workdir, upstream=f"{server.url}/metrics", engine="vllm")
        exporter.start()
        try:
            idle = exporter.rss_bytes()
            durations = []
            for _ in range(SCRAPES):
                durations.append(exporter.metrics().seconds)
            rss = exporter.rss_bytes()
        finally:
            exporter.stop()
    print(
        f"exporter RSS: {idle / 2**20:.1f} MB idle, {rss / 2**20:.1f} MB after {SCRAPES} "
        f"scrapes of the 200-model page (target <= 60 MB); scrape p50 "
        f"{statistics.median(durations) * 1e3:.1f} ms"
    )


def part_prometheus(page: str, workdir: Path) -> None:
    with PageServer(page) as server:
        exporter = ExporterProcess(workdir / "exp", upstream=f"{server.url}/metrics", engine="vllm")
        exporter.start()
        jobs = [
            scrape_job("raw", server.url.removeprefix("http://"), interval="2s"),
            scrape_job("exporter", exporter.address, interval="2s"),
        ]
        try:
            with Prometheus(workdir / "prom", scrape_configs=jobs) as prom:
                time.sleep(40)
                got = {
                    s.labels["job"]: s.value
                    for s in prom.query("avg_over_time(scrape_duration_seconds[30s])")
                }
        finally:
            exporter.stop()
    raw, ours = got["raw"], got["exporter"]
    print(
        f"Prometheus scrape_duration_seconds (mean over 30 s): raw page {raw * 1e3:.1f} ms, "
        f"exporter {ours * 1e3:.1f} ms, ratio {ours / raw:.2f}x (target <= 3x)"
    )


def part_live() -> None:
    page = vllm_page(200)
    with tempfile.TemporaryDirectory() as tmp:
        part_rss(page, Path(tmp) / "rss")
        part_prometheus(page, Path(tmp))
