"""The proxy mode's cost, against the same upstream reached directly, in one run.

An Ollama-like upstream (a separate process, answering at once, one write per token) serves
both paths; the real `inferwatch exporter --proxy` stands in front of it. Requests alternate
between direct and proxied so both see the same machine.

1. Added latency: 1000 small non-streamed `POST /api/generate`, one at a time. Median and p99
   of each path, and the difference. Target: median added at most 1 ms.
2. Streamed-token throughput: 8 concurrent streams of 20000 NDJSON tokens each, as fast as the
   upstream writes them; tokens per second through each path, best of 5 alternating rounds.
   Target: proxied at least 0.9x direct.

Run: `.venv/bin/python bench/proxy.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

LATENCY_REQUESTS = 1000
STREAMS = 8
TOKENS = 20000
ROUNDS = 5


def _line(model: str, i: int) -> bytes:
    doc = {
        "model": model,
        "created_at": "2026-11-25T12:00:00Z",
        "response": f"t{i} ",
        "done": False,
    }
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


async def _generate(request: web.Request) -> web.StreamResponse:
    doc = await request.json()
    model, n = doc.get("model", "m"), doc.get("options", {}).get("num_predict", 1)
    final = {"model": model, "done": True, "done_reason": "stop", "prompt_eval_count": 5,
             "eval_count": n}  # fmt: skip
    if doc.get("stream", True) is False:
        return web.json_response(final)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    for i in range(n):
        await resp.write(_line(model, i))
    await resp.write(json.dumps(final).encode() + b"\n")
    await resp.write_eof()
    return resp


def serve_upstream(port: int) -> None:
    app = web.Application()
    app.router.add_post("/api/generate", _generate)
    app.router.add_get("/api/ps", lambda _r: web.json_response({"models": []}))
    app.router.add_get("/api/version", lambda _r: web.json_response({"version": "bench"}))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _start(args: list[str], ready: str) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(ready)
    return proc


async def _one(session: aiohttp.ClientSession, url: str) -> float:
    body = {"model": "bench", "prompt": "hi", "stream": False}
    start = time.perf_counter()
    async with session.post(url + "/api/generate", json=body) as resp:
        await resp.read()
        assert resp.status == 200
    return time.perf_counter() - start


async def _stream(session: aiohttp.ClientSession, url: str) -> int:
    body = {"model": "bench", "prompt": "hi", "options": {"num_predict": TOKENS}}
    lines = 0
    async with session.post(url + "/api/generate", json=body) as resp:
        async for chunk in resp.content.iter_any():
            lines += chunk.count(b"\n")
    return lines - 1  # the final line carries no token


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(direct: str, proxied: str) -> None:
    async with aiohttp.ClientSession() as session:
        for url in (direct, proxied):  # warm up connections and caches
            for _ in range(50):
                await _one(session, url)
        times: dict[str, list[float]] = {direct: [], proxied: []}
        for _ in range(LATENCY_REQUESTS):
            for url in (direct, proxied):
                times[url].append(await _one(session, url))
        d, p = times[direct], times[proxied]
        med_d, med_p = statistics.median(d), statistics.median(p)
        p99_d, p99_p = _pct(d, 0.99), _pct(p, 0.99)
        print(f"latency, {LATENCY_REQUESTS} requests each     median ms   p99 ms")
        print(f"  direct                              {med_d * 1e3:9.3f}  {p99_d * 1e3:7.3f}")
        print(f"  through the proxy                   {med_p * 1e3:9.3f}  {p99_p * 1e3:7.3f}")
        added = (med_p - med_d) * 1e3
        print(
            f"  added                               {added:9.3f}  {(p99_p - p99_d) * 1e3:7.3f}"
            f"   target: median added <= 1 ms: {'ok' if added <= 1.0 else 'MISSED'}"
        )

        rates: dict[str, list[float]] = {direct: [], proxied: []}
        for _ in range(ROUNDS):
            for url in (direct, proxied):
                start = time.perf_counter()
                counts = await asyncio.gather(*(_stream(session, url) for _ in range(STREAMS)))
                elapsed = time.perf_counter() - start
                assert sum(counts) == STREAMS * TOKENS, counts
                rates[url].append(sum(counts) / elapsed)
        best_d, best_p = max(rates[direct]), max(rates[proxied])
        ratio = best_p / best_d
        print(
            f"\nstreamed tokens, {STREAMS} streams x {TOKENS} tokens   tokens/s (best of {ROUNDS})"
        )
        print(f"  direct                              {best_d:12.0f}")
        print(f"  through the proxy                   {best_p:12.0f}")
        print(
            f"  proxied / direct                    {ratio:12.2f}"
            f"   target: >= 0.9x: {'ok' if ratio >= 0.9 else 'MISSED'}"
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-upstream":
        serve_upstream(int(sys.argv[2]))
        return
    up_port, proxy_port = _free_port(), _free_port()
    direct = f"http://127.0.0.1:{up_port}"
    proxied = f"http://127.0.0.1:{proxy_port}"
    inferwatch = [sys.executable, "-c", "from inferwatch.cli import main; main()"]
    env_python = os.environ.get("PYTHON", sys.executable)
    upstream = _start([env_python, __file__, "--serve-upstream", str(up_port)], direct + "/api/ps")
    proxy = _start(
        [*inferwatch, "exporter", "--proxy", "--upstream", direct, "--listen",
         f"127.0.0.1:{proxy_port}", "--log-level", "warning"],
        proxied + "/healthz",
    )  # fmt: skip
    try:
        asyncio.run(measure(direct, proxied))
    finally:
        for proc in (proxy, upstream):
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
