"""Running a load: a closed loop at a concurrency, or an open loop of Poisson arrivals.

Closed loop: `concurrency` workers each send a request, wait for it, and send the next.
Open loop: requests start at the arrival times of a Poisson process of `rate` per second,
whether or not earlier ones have finished, so a slow server builds a queue the way it would
under real traffic. Either stops starting requests at the duration or the request count,
then waits for those in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp

from inferwatch.load.client import send
from inferwatch.load.progress import Progress
from inferwatch.load.prompts import make_prompt
from inferwatch.load.report import LoadReport, RequestResult
from inferwatch.load.spec import MODELS_PATH, LoadSpec

# Connections an open loop may hold at once; arrivals beyond wait for one, and that wait is
# part of their latency (it is the client's queue).
OPEN_LOOP_CONNECTIONS = 1024
MODELS_TIMEOUT = 10.0

SendOne = Callable[[int], Awaitable[None]]


class LoadError(RuntimeError):
    """The run could not start (the server cannot be reached, or names no model)."""


def arrival_offsets(rate: float, seed: int) -> Iterator[float]:
    """Seconds from the start at which the requests of an open loop arrive: 0, then gaps
    drawn from an exponential distribution of mean 1/rate (a Poisson process)."""
    rng = random.Random(seed)
    t = 0.0
    while True:
        yield t
        t += rng.expovariate(rate)


async def discover_model(session: aiohttp.ClientSession, spec: LoadSpec) -> str:
    """The first model the server lists at /v1/models."""
    url = spec.base_url + MODELS_PATH
    try:
        async with asyncio.timeout(MODELS_TIMEOUT), session.get(url) as resp:
            if resp.status != 200:
                raise LoadError(f"GET {url} answered HTTP {resp.status}; pass --model NAME")
            doc = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise LoadError(f"cannot list the models at {url}: {reason}") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise LoadError(f"GET {url} listed no model; pass --model NAME")
    model = data[0].get("id")
    if not isinstance(model, str) or not model:
        raise LoadError(f"GET {url}: the first model has no id; pass --model NAME")
    return model


async def run_load_async(spec: LoadSpec, progress: Progress | None = None) -> LoadReport:
    """Run the load `spec` describes and report what the client saw."""
    limit = spec.concurrency if spec.mode == "closed" else OPEN_LOOP_CONNECTIONS
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        model = spec.model or await discover_model(session, spec)
        results: list[RequestResult] = []
        start = time.perf_counter()
        deadline = start + spec.duration if spec.duration is not None else float("inf")
        failed = 0

        def record(result: RequestResult) -> None:
            nonlocal failed
            results.append(result)
            failed += not result.ok
            if progress is not None:
                progress.update(len(results), failed, time.perf_counter() - start)

        async def one(index: int) -> None:
            prompt = make_prompt(spec.prompt_tokens, spec.seed, index)
            record(await send(session, spec, model, prompt))

        ticker = asyncio.create_task(_tick(progress, results, start)) if progress else None
        try:
            if spec.mode == "closed":
                await _closed_loop(spec, deadline, one)
            else:
                await _open_loop(spec, start, deadline, one)
        finally:
            if ticker is not None:
                ticker.cancel()
        end = max((r.end for r in results), default=start)
        if progress is not None:
            progress.update(len(results), failed, end - start, force=True)
            progress.close()
    return LoadReport(spec=spec, model=model, duration=end - start, results=results)


async def _closed_loop(spec: LoadSpec, deadline: float, one: SendOne) -> None:
    counter = itertools.count()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            index = next(counter)
            if spec.requests is not None and index >= spec.requests:
                return
            await one(index)

    assert spec.concurrency is not None
    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open_loop(spec: LoadSpec, start: float, deadline: float, one: SendOne) -> None:
    assert spec.rate is not None
    tasks: list[asyncio.Task] = []
    try:
        for index, offset in enumerate(arrival_offsets(spec.rate, spec.seed)):
            if spec.requests is not None and index >= spec.requests:
                break
            at = start + offset
            if at >= deadline:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def _tick(progress: Progress, results: list[RequestResult], start: float) -> None:
    """Keep the bar's clock moving while no request finishes."""
    while True:
        await asyncio.sleep(0.25)
        failed = sum(1 for r in results if not r.ok)
        progress.update(len(results), failed, time.perf_counter() - start)


def run_load(spec: LoadSpec, progress: Progress | None = None) -> LoadReport:
    """Run a load from synchronous code (its own event loop), e.g.

    report = run_load(LoadSpec("http://127.0.0.1:8000", concurrency=4, requests=100,
                               max_tokens=32, stream=True))
    print(report.table())
    """
    return asyncio.run(run_load_async(spec, progress))
