"""The SLO service's cost as the fleet grows: SLO status and recommendations for 1, 50 and 500
deployments read from one real Prometheus holding all their series, set up as in production:
the generated recording rules and the fleet's SLO rules loaded, their series backfilled over
the history.

Each size is its own namespace (1, 50 and 500 deployments of one pod each, two SLOs per
deployment), so the service's batched queries narrow to one namespace and Prometheus holds the
same TSDB for every size. Per size and path, the number of PromQL queries sent and the best
wall time of a few runs of `statuses()` and `advice()` (a 6h window), as ratios against the
1-deployment baseline of the same path in the same run:

- `recorded`: the service as deployed, reading the recording rules' series (SLO burn rates,
  the advisor's window figures);
- `raw`: the same service told to ignore them (`recording_rules=False`), as against a
  Prometheus without inferwatch's rules.

Targets, for the recorded path: the number of queries does not grow with the number of
deployments, and 500 deployments take at most 3x the time of one. `query s` is the time
Prometheus took to answer, summed over the queries of one status and one advice call (they
run 8 at a time), against which the Python side's share can be read. `answers s` is the floor
under any client: the same queries sent again, 8 at a time, and their answers' bodies read,
not even decoded; `x base` on it is against the whole service at one deployment, so it shows
what share of the 3x Prometheus alone takes.

The history: seven hours of the normalized series every 2 minutes, backfilled with
`promtool tsdb create-blocks-from openmetrics`; the recording rules
(alerts/generated/rules/inferwatch-recording.rules.yaml) evaluated over it every minute with
`promtool tsdb create-blocks-from rules`; the SLO rate rules (the generated backfill file of
these SLOs) evaluated the same way in one pass (promtool would write 8,816 blocks for their
2,204 rules); then Prometheus starts with the rules, merges the blocks, and evaluates the
rules that read recorded series (SLO windows, the advisor's window figures) before timing.

Run: `.venv/bin/python bench/slo.py` (needs Debian's prometheus and promtool; about three
minutes to write, backfill and merge the history of 551 deployments).
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from inferwatch.alerts import build, rules, slo_rules
from inferwatch.alerts.config import AlertConfig
from inferwatch.slo import spec as slo_spec
from inferwatch.slo.prom import MAX_PARALLEL, Deadline, Prometheus, Query
from inferwatch.slo.service import ServiceConfig, SLOService
from tests.fixtures.slo import history
from tests.harness import promtool
from tests.harness.prometheus import Prometheus as PrometheusServer

SIZES = {"one": 1, "fifty": 50, "five-hundred": 500}
PATHS = ("recorded", "raw")
REPEAT = 5
_session = requests.Session()
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


def merged(storage: Path) -> bool:
    """Whether Prometheus has merged the backfilled blocks: none overlaps another."""
    spans = []
    for meta in storage.glob("*/meta.json"):
        doc = json.loads(meta.read_text())
        spans.append((doc["minTime"], doc["maxTime"]))
    spans.sort()
    return all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def prepare(workdir: Path) -> tuple[PrometheusServer, float]:
    """Prometheus with the history, the rules loaded and their series backfilled, started;
    and the time the history ends, at which the service is then asked."""
    at = time.time() // 60 * 60
    start = (at - 7 * 3600) // history.BLOCK * history.BLOCK
    tl = history.Timeline(now=at, start=start, fine_from=start, end=at, step=STEP)
    storage = workdir / "data"
    for namespace, count in SIZES.items():
        promtool.backfill(history.histories(tl, fleet(namespace, count), **BOUNDS)[1], storage)

    specs = [s for namespace, count in SIZES.items() for s in specs_for(namespace, count)]
    runbook = AlertConfig().runbook
    slo_file, rates_file = workdir / "slos.rules.yaml", workdir / "slo-rates.rules.yaml"
    slo_file.write_text(build.dump(rules.rule_file(slo_rules.groups(specs), runbook)))
    rates_file.write_text(build.dump(rules.rule_file(build.backfill_groups(specs), runbook)))

    # First the rules that read raw series, over the whole history; then, on a Prometheus that
    # holds those, the rules that read them (window figures, SLO windows and burn rates), at
    # the last evaluations the service reads.
    last = at - 2 * history.RULES_EVAL
    for first, recording, slos in ((start, "pass-1", rates_file), (last, "pass-2", slo_file)):
        source = PrometheusServer(workdir / "source", storage=storage).start()
        try:
            history.backfill_rules(
                source, history.RECORDING_RULES, first, at, storage, workdir / recording
            )
            history.backfill_rules_in_one_pass(source, slos, first, at, storage)
        finally:
            source.stop()
    # The rules are loaded as in production; what they record from now on comes after `at`.
    server = PrometheusServer(
        workdir / "prometheus",
        rule_files=[history.RECORDING_RULES, slo_file],
        storage=storage,
        evaluation_interval="1m",
    )
    server.start()
    deadline = time.monotonic() + 300
    while not merged(storage) and time.monotonic() < deadline:
        time.sleep(2)
    return server, at


def measure(url: str, at: float, namespace: str, count: int, path: str) -> tuple:
    prom = Prometheus(url, timeout=60)
    spent = [0.0]
    prom.on_query = lambda _kind, seconds, _outcome: spent.__setitem__(0, spent[0] + seconds)
    config = ServiceConfig(window="6h", timeout=60, recording_rules=path == "recorded")
    service = SLOService(specs_for(namespace, count), prom, config)
    try:
        figures = service.figures(namespace, at=at)  # warms Prometheus' caches once
        assert len(figures) == count, (namespace, len(figures))
        found = service.statuses(at=at)
        # The path measured is the path taken: every figure and status from it.
        recorded = path == "recorded"
        assert all(f.recorded == recorded for f in figures.values()), (namespace, path)
        sources = {s.source for s in found}
        assert sources == {"recording-rules" if recorded else "raw-series"}, sources
        before = prom.count
        service.statuses(at=at)
        status_queries = prom.count - before
        before = prom.count
        service.advice(namespace, at=at)
        advice_queries = prom.count - before
        spent[0] = 0.0
        status_time = best_of(lambda: service.statuses(at=at))
        advice_time = best_of(lambda: service.advice(namespace, at=at))
        waited = spent[0] / REPEAT
        sent = queries_of(prom, lambda: (service.statuses(at=at), service.advice(namespace, at=at)))
        answered = best_of(lambda: answers(url, sent))
    finally:
        prom.close()
    return count, status_queries, advice_queries, status_time, advice_time, waited, answered


def answers(url: str, sent: dict[str, Query]) -> None:
    """The queries' answers fetched as the service's client does (8 at a time), not decoded."""

    def fetch(q: Query) -> bytes:
        params: dict[str, object] = {"query": q.expr}
        if q.start is None:
            params["time"] = q.at
        else:
            params.update(start=q.start, end=q.at, step=q.step)
        kind = "query" if q.start is None else "query_range"
        response = _session.post(f"{url}/api/v1/{kind}", data=params, timeout=60)
        response.raise_for_status()
        return response.content

    with concurrent.futures.ThreadPoolExecutor(MAX_PARALLEL) as pool:
        list(pool.map(fetch, sent.values()))


def queries_of(prom: Prometheus, run: Callable[[], object]) -> dict[str, Query]:
    """The queries `run` sends, as sent (expression, time, range)."""
    sent: list[Query] = []
    call = prom._call

    def recording(q: Query, deadline: Deadline) -> list:
        sent.append(q)
        return call(q, deadline)

    prom._call = recording  # type: ignore[method-assign]
    try:
        run()
    finally:
        prom._call = call  # type: ignore[method-assign]
    return {str(i): q for i, q in enumerate(sent)}


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-slo-"))
    built = time.perf_counter()
    server, at = prepare(workdir)
    print(
        f"{sum(SIZES.values())} deployments: history, rules and their backfill ready in "
        f"{time.perf_counter() - built:.0f}s"
    )
    try:
        rows = {
            path: [measure(server.url, at, ns, count, path) for ns, count in SIZES.items()]
            for path in PATHS
        }
    finally:
        server.stop()

    print(
        f"{'path':>8} {'deployments':>11} {'SLOs':>5} {'queries':>13} {'status s':>9} "
        f"{'advice s':>9} {'total s':>8} {'x baseline':>10} {'query s':>8} "
        f"{'answers s':>9} {'x base':>7}"
    )
    ok = True
    for path in PATHS:
        base = rows[path][0]
        for count, sq, aq, st, at, waited, answered in rows[path]:
            whole = base[3] + base[4]
            ratio = (st + at) / whole
            print(
                f"{path:>8} {count:>11} {2 * count:>5} {sq:>5} + {aq:>5} {st:>9.3f} {at:>9.3f} "
                f"{st + at:>8.3f} {ratio:>9.2f}x {waited:>8.3f} "
                f"{answered:>9.3f} {answered / whole:>6.2f}x"
            )
            if path == "recorded":
                ok &= (sq, aq) == (base[1], base[2])
                if count == 500:
                    ok &= ratio <= 3.0
    print(
        "targets (recorded path): queries constant across sizes, 500 deployments <= 3x one: "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
