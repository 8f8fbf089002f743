"""The SLO service's cost as the fleet grows: SLO status and recommendations for 1, 50 and 500
deployments read from one real Prometheus holding all their series.

Each size is its own namespace (1, 50 and 500 deployments of one pod each, two SLOs per
deployment), so the service's batched queries narrow to one namespace and Prometheus holds the
same TSDB for every size. Per size: the number of PromQL queries sent and the best wall time
of a few runs, for `statuses()` and `advice()` (a 6h window), as ratios against the
1-deployment baseline of the same run.

Targets: the number of queries does not grow with the number of deployments, and 500
deployments take at most 3x the time of one. `query s` is the time Prometheus took to answer,
summed over the queries of one status and one advice call (they run 8 at a time), against
which the Python side's share can be read.

Run: `.venv/bin/python bench/slo.py` (needs Debian's prometheus and promtool; about a minute
to write and backfill seven hours of series for 551 deployments).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferwatch.slo import spec as slo_spec
from inferwatch.slo.prom import Prometheus
from inferwatch.slo.service import ServiceConfig, SLOService
from tests.fixtures.slo import history
from tests.harness import promtool
from tests.harness.prometheus import Prometheus as PrometheusServer

SIZES = {"one": 1, "fifty": 50, "five-hundred": 500}
REPEAT = 3
STEP = 120  # seconds between samples: every 5m rate window holds two or three
# Fewer buckets than vLLM's own 22 keep the backfill small; the queries are the same.
BOUNDS = {"ttft_bounds": (0.25, 0.5, 1.0, 2.5), "tpot_bounds": (0.05, 0.1)}


def fleet(namespace: str, count: int) -> list[history.Scenario]:
    out = []
    for i in range(count):
        name = f"{namespace}-{i:03d}"
        pod = history.Pod(f"{name}-0", [(float("-inf"), history.STEADY)])
        out.append(history.Scenario(name, [pod], history.info(), namespace))
    return out


def specs_for(namespace: str, count: int) -> tuple[slo_spec.SLOSpec, ...]:
    lines = ["slos:"]
    for i in range(count):
        name = f"{namespace}-{i:03d}"
        lines += [
            f"  - {{name: {name}-availability, namespace: {namespace}, deployment: {name},",
            "     sli: {type: availability}, objective: 0.999}",
            f"  - {{name: {name}-ttft, namespace: {namespace}, deployment: {name}, engine: vllm,",
            "     sli: {type: latency, metric: llm_time_to_first_token_seconds, threshold: 1.0},",
            "     objective: 0.99}",
        ]
    return slo_spec.parse("\n".join(lines) + "\n", f"{namespace}.yaml")


def best_of(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEAT):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-slo-"))
    now = time.time() // 60 * 60
    start = (now - 7 * 3600) // history.BLOCK * history.BLOCK
    tl = history.Timeline(now=now, start=start, fine_from=start, end=now + 3600, step=STEP)
    built = time.perf_counter()
    texts = []
    for namespace, count in SIZES.items():
        texts.append(history.histories(tl, fleet(namespace, count), **BOUNDS)[1])
    server = PrometheusServer(workdir / "prometheus")
    for text in texts:
        promtool.backfill(text, server.storage)
    server.start()
    deployments = sum(SIZES.values())
    print(f"{deployments} deployments backfilled in {time.perf_counter() - built:.1f}s")
    try:
        rows = []
        for namespace, count in SIZES.items():
            prom = Prometheus(server.url, timeout=60)
            spent = [0.0]
            prom.on_query = lambda _kind, seconds, _outcome, spent=spent: spent.__setitem__(
                0, spent[0] + seconds
            )
            service = SLOService(
                specs_for(namespace, count), prom, ServiceConfig(window="6h", timeout=60)
            )
            found = service.advice(namespace)  # warm Prometheus' caches once
            assert len(found) == count, (namespace, len(found))
            before = prom.count
            service.statuses()
            status_queries = prom.count - before
            before = prom.count
            service.advice(namespace)
            advice_queries = prom.count - before
            spent[0] = 0.0
            status_time = best_of(service.statuses)
            advice_time = best_of(lambda s=service, ns=namespace: s.advice(ns))
            waited = spent[0] / REPEAT
            rows.append((count, status_queries, advice_queries, status_time, advice_time, waited))
            prom.close()
    finally:
        server.stop()

    base = rows[0]
    print(
        f"{'deployments':>11} {'SLOs':>5} {'queries':>15} {'status s':>9} {'advice s':>9} "
        f"{'total s':>8} {'x baseline':>10} {'query s':>8}"
    )
    ok = True
    for count, sq, aq, st, at, waited in rows:
        ratio = (st + at) / (base[3] + base[4])
        print(
            f"{count:>11} {2 * count:>5} {sq:>7} + {aq:>5} {st:>9.3f} {at:>9.3f} "
            f"{st + at:>8.3f} {ratio:>9.2f}x {waited:>8.3f}"
        )
        ok &= (sq, aq) == (base[1], base[2])
        if count == 500:
            ok &= ratio <= 3.0
    print(
        "targets: queries constant across sizes, 500 deployments <= 3x one: "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
