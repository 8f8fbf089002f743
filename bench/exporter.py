"""The sidecar's cost against stock baselines measured in the same run.

1. Parse + normalize + render of vLLM pages of 1, 20 and 200 models, against
   `prometheus_client.parser` alone parsing the same text (and a plain line splitter, the floor
   for any Python parser). Target: at most 0.15x the stock parser on the 200-model page.
2. The exporter's RSS after 100 scrapes of the 200-model page. Target: at most 60 MB.
3. One real Prometheus scraping the raw page and the exporter in front of it: the exporter's
   `scrape_duration_seconds` against the raw page's. Target: at most 3x.

Run: `.venv/bin/python bench/exporter.py` (part 3 needs Debian's prometheus).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families

from bench.pages import vllm_page
from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Context, Normalizer, engine_info, render


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stock(page: str) -> None:
    for family in text_string_to_metric_families(page):
        for _sample in family.samples:
            pass


def splitter(page: str) -> None:
    for line in page.split("\n"):
        line.split(" ")


def pipeline(normalizer: Normalizer, page: str) -> str:
    ctx = normalizer.ctx
    result = normalizer.normalize(page)
    engine_info(result, normalizer.adapter, ctx)
    return render([result], ctx)


def part_parse() -> None:
    adapter = registry.get("vllm")
    print("models  lines   bytes     stock ms  split ms  cold ms  warm ms  warm/stock  cold/stock")
    for models in (1, 20, 200):
        page = vllm_page(models)
        repeat = 20 if models < 200 else 5
        t_stock = best_of(lambda page=page: stock(page), repeat)
        t_split = best_of(lambda page=page: splitter(page), repeat)
        t_cold = best_of(lambda page=page: pipeline(Normalizer(adapter, Context()), page), repeat)
        warm = Normalizer(adapter, Context())
        pipeline(warm, page)
        t_warm = best_of(lambda page=page, warm=warm: pipeline(warm, page), repeat)
        print(
            f"{models:6d}  {page.count(chr(10)):6d}  {len(page):8d}  {t_stock * 1e3:8.1f}  "
            f"{t_split * 1e3:8.1f}  {t_cold * 1e3:7.1f}  {t_warm * 1e3:7.1f}  "
            f"{t_warm / t_stock:10.3f}  {t_cold / t_stock:10.3f}"
        )


def main() -> None:
    part_parse()
    if "--parse-only" in sys.argv:
        return
    from bench.exporter_live import part_live

    part_live()


if __name__ == "__main__":
    main()
