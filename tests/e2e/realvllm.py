"""A real vLLM 0.32.0 (CPU build) serving a tiny local model, for the end-to-end tests.

    inst = ensure_installed()                # cached: minutes the first time, then instant
    server = start_server(inst, workdir, max_num_seqs=4)
    ... server.base_url, server.metrics() ...
    server.stop()                            # the server and every process it started

The recipe (install, tiny model, command line, guard) is `inferwatch.simulators.realvllm`'s,
which `inferwatch demo --real-vllm` uses too; this module puts the install in the repository's
cache and runs the server as a harness process. The cache is `$INFERWATCH_CACHE/vllm-0.32.0`,
by default `<repo>/.cache/vllm-0.32.0` (git-ignored). The figures it costs are in
docs/real-vllm.md.

Run this file to install, start, measure and stop once: `.venv/bin/python -m tests.e2e.realvllm`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from inferwatch.simulators import realvllm as recipe
from inferwatch.simulators.realvllm import (
    GUARD,
    MAX_MODEL_LEN,
    MAX_NUM_SEQS,
    MODEL_NAME,
    PACKAGE,
    READY_TIMEOUT,
    VLLM_VERSION,
    Installation,
    InstallError,
)
from tests.harness import procs

ROOT = Path(__file__).resolve().parents[2]
__all__ = [
    "GUARD",
    "MAX_MODEL_LEN",
    "MAX_NUM_SEQS",
    "MODEL_NAME",
    "PACKAGE",
    "VLLM_VERSION",
    "InstallError",
    "Installation",
    "VllmServer",
    "cache_dir",
    "ensure_installed",
    "start_server",
]


def cache_dir() -> Path:
    root = os.environ.get("INFERWATCH_CACHE")
    return (Path(root) if root else ROOT / ".cache") / f"vllm-{VLLM_VERSION}"


def ensure_installed(cache: Path | None = None) -> Installation:
    """vLLM's virtual environment and the tiny model, installed into `cache` when missing."""
    return recipe.ensure_installed(cache or cache_dir())


@dataclass
class VllmServer:
    """A running vLLM: where it answers, and how to stop it with everything it started."""

    proc: procs.Proc
    port: int
    workdir: Path
    start_seconds: float  # from the command to the first 200 from /health
    model: str = MODEL_NAME
    _descendants: set[tuple[int, str]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return self.base_url + "/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()

    def processes(self) -> list[int]:
        """vLLM's processes: the API server and those it started (the engine core, ...)."""
        if self.proc.alive:
            self._descendants |= _descendants(self.proc.pid)
        return [pid for pid, _ in self._descendants]

    def running(self) -> list[int]:
        """The guard and those of vLLM's processes still running."""
        self.processes()
        guard = [self.proc.pid] if self.proc.alive else []
        return guard + [pid for pid, start in self._descendants if _alive(pid, start)]

    def rss_bytes(self) -> int:
        """Resident memory of vLLM's processes (shared pages counted in each)."""
        return sum(_rss(pid) for pid in self.processes())

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM through the guard, which stops vLLM's process group and kills what is left
        after its own grace; then check, by PID, that none of vLLM's processes runs."""
        self.processes()  # children reparent once their parent exits: note them first
        self.proc.stop(grace)
        left = [(pid, start) for pid, start in self._descendants if _alive(pid, start)]
        for pid, _ in left:  # only if the guard itself had to be killed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid, start) for pid, start in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        still = [pid for pid, start in left if _alive(pid, start)]
        if still:
            raise procs.ProcessError(f"vLLM's processes {still} outlived SIGKILL")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; the start time makes (PID, start) an
    identity that a recycled PID does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _alive(pid: int, start: str) -> bool:
    """Still running: a zombie waiting for its parent to reap it is not."""
    stat = _stat(pid)
    return stat is not None and stat[1] == start and stat[0] != "Z"


def _descendants(pid: int) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in map(int, (task / "children").read_text().split()):
                    start = _start_time(child)
                    if start is not None:
                        found.add((child, start))
                        todo.append(child)
    return found


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_server(
    inst: Installation,
    workdir: Path,
    *,
    max_num_seqs: int = MAX_NUM_SEQS,
    kv_cache_memory_bytes: int = recipe.KV_CACHE_BYTES,
    max_model_len: int = MAX_MODEL_LEN,
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = READY_TIMEOUT,
) -> VllmServer:
    """Start vLLM on a free loopback port, under the guard, and wait for /health.

    Its temporary files and caches stay inside `workdir`. A small KV cache and a low
    `max_num_seqs` make queueing and KV-cache pressure easy to provoke.
    """
    port = procs.free_port()
    args, env = recipe.server_command(
        inst,
        port,
        workdir,
        max_num_seqs=max_num_seqs,
        kv_cache_memory_bytes=kv_cache_memory_bytes,
        max_model_len=max_model_len,
        extra_args=extra_args,
    )
    started = time.monotonic()
    proc = procs.start(
        args,
        name="vllm",
        workdir=workdir,
        env=env,
        ready_url=f"http://127.0.0.1:{port}/health",
        ready_timeout=ready_timeout,
    )
    server = VllmServer(proc, port, workdir, time.monotonic() - started)
    server.processes()
    return server


def _measure() -> None:
    """Install (timed), start (timed), a few requests, RSS, stop: the figures in the docs."""
    import tempfile

    from inferwatch.load import LoadSpec, run_load

    t = time.monotonic()
    inst = ensure_installed()
    print(f"install (or cache check): {time.monotonic() - t:.1f} s -> {inst.venv}")
    with tempfile.TemporaryDirectory(prefix="vllm-measure-") as workdir:
        server = start_server(inst, Path(workdir))
        try:
            print(f"start to /health: {server.start_seconds:.1f} s")
            for stream in (False, True):
                for max_tokens in (8, 48):
                    report = run_load(
                        LoadSpec(
                            server.base_url,
                            requests=8,
                            max_tokens=max_tokens,
                            prompt_tokens=32,
                            stream=stream,
                        )
                    )
                    print(
                        f"stream={stream} max_tokens={max_tokens}: "
                        f"e2e p50 {report.e2e.p50 * 1000:.0f} ms"
                        if report.e2e
                        else "failed",
                        f"ttft p50 {report.ttft.p50 * 1000:.0f} ms" if report.ttft else "",
                    )
            report = run_load(
                LoadSpec(
                    server.base_url,
                    concurrency=4,
                    requests=32,
                    max_tokens=32,
                    prompt_tokens=64,
                    stream=True,
                )
            )
            print(report.table())
            t = time.monotonic()
            server.metrics()
            print(f"/metrics: {(time.monotonic() - t) * 1000:.0f} ms")
            print(f"processes {server.processes()}, RSS {server.rss_bytes() / 2**20:.0f} MiB")
        finally:
            t = time.monotonic()
            server.stop()
            print(f"stop: {time.monotonic() - t:.1f} s")


if __name__ == "__main__":
    _measure()
