"""Starting and stopping real processes for tests.

`start()` runs a command with its output in a log file, waits for an HTTP readiness URL and
returns a `Proc`; `Proc.stop()` sends SIGTERM, then SIGKILL after a grace period. Every process
started here is recorded, and `stop_all()` (run by the plugin at the end of the session and at
interpreter exit) stops whatever is still running. On Linux each child also gets a parent-death
signal, so a test run killed outright does not leave servers behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.harness import loopback

LOG_TAIL_LINES = 40

_running: dict[int, Proc] = {}
_running_lock = threading.Lock()
_handed_out: set[int] = set()


class ProcessError(RuntimeError):
    """A process did not start or become ready; the message ends with its log's last lines."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now, never the same one twice in this session."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port after 100 tries")


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel sends SIGKILL to the child when the test process dies, so
    # even `kill -9` of pytest leaves no Prometheus behind. Linux only; harmless elsewhere.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _pdeathsig_safe() -> bool:
    return (
        sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
    )


class Proc:
    """A started process: its PID, its log file, readiness and stopping."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path, popen: subprocess.Popen):
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.popen = popen
        self.pid = popen.pid

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} {'running' if self.alive else 'exited'}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def fail(self, what: str) -> ProcessError:
        """An error about this process, with the end of its log."""
        return ProcessError(
            f"{self.name} (pid {self.pid}): {what}\n"
            f"command: {' '.join(self.args)}\n"
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def wait_ready(self, url: str, timeout: float = 30.0, status: int = 200) -> None:
        """Poll `url` until it answers `status`; raise with the log if the process exits first."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.alive:
                raise self.fail(f"exited with code {self.returncode} before {url} was ready")
            try:
                with loopback.urlopen(url, timeout=2) as resp:
                    if resp.status == status:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                if exc.code == status:
                    return
                last = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise self.fail(f"{url} not ready after {timeout:.0f}s (last: {last})")

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if still running after `grace` seconds; the exit code."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        with _running_lock:
            _running.pop(self.pid, None)
        return self.popen.returncode

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; its exit code (raises on timeout)."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(f"still running {timeout:.1f}s later") from None
        with _running_lock:
            _running.pop(self.pid, None)
        return code

    def rss_bytes(self) -> int:
        """Resident memory now (VmRSS from /proc/<pid>/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise self.fail("no VmRSS in /proc status (has it exited?)")


def start(
    args: Sequence[str],
    *,
    name: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    ready_url: str | None = None,
    ready_timeout: float = 30.0,
    ready_status: int = 200,
) -> Proc:
    """Start `args` with stdout and stderr in `workdir/<name>.log`; wait for `ready_url`.

    `env` is added to this process' environment. If the process never becomes ready it is
    stopped and a `ProcessError` carries the last lines of its log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=full_env,
            # The parent-death signal follows the *thread* that forks: only children of the
            # main thread get it, or one started from a worker thread would die with that thread.
            preexec_fn=_die_with_parent if _pdeathsig_safe() else None,
        )
    proc = Proc(name, args, log_path, popen)
    with _running_lock:
        _running[proc.pid] = proc
    if ready_url is not None:
        try:
            proc.wait_ready(ready_url, ready_timeout, ready_status)
        except BaseException:
            proc.stop(grace=2)
            raise
    return proc


def on_free_port(
    launch: Callable[[int], Proc], first: int | None = None, attempts: int = 3
) -> Proc:
    """`launch(port)` on `first` (or a free port), again on another if it was taken meanwhile.

    Between `free_port()` and the server's bind another process (another test run on the same
    machine) can take the port; the server then exits with "address already in use".
    """
    port = first if first is not None else free_port()
    for attempt in range(attempts):
        try:
            return launch(port)
        except ProcessError as exc:
            if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                raise
            port = free_port()
    raise AssertionError("unreachable")


def running() -> list[Proc]:
    """Processes started here and not yet stopped."""
    with _running_lock:
        return [p for p in _running.values() if p.alive]


def stop_all(grace: float = 5.0) -> list[str]:
    """Stop every process still running; the names of those that were."""
    with _running_lock:
        procs = list(_running.values())
    stopped = [repr(p) for p in procs if p.alive]
    for proc in procs:
        proc.stop(grace)
    return stopped


atexit.register(stop_all)
