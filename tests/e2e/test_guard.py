"""The guard that vLLM runs under: its whole process group goes when the server stops, when
the guard is told to stop, and when the test process that started it is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e import realvllm

# A main process that leaves a child behind, as vLLM's API server does with its engine core.
LEAVES_A_CHILD = ["sh", "-c", "sleep 300 & echo $! > child.pid; wait"]


def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {timeout} s")


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat")
        if not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.02)
    return False


def guarded(tmp_path: Path, *command: str, grace: float = 10.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(realvllm.GUARD), "--grace", str(grace), *command], cwd=tmp_path
    )


def test_sigterm_stops_the_group_and_passes_the_exit_code_on(tmp_path):
    guard = guarded(
        tmp_path, "sh", "-c", "trap 'exit 7' TERM; sleep 300 & echo $! > child.pid; wait"
    )
    child = int(wait_for_file(tmp_path / "child.pid"))
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(10) == 7
    assert gone(child)


def test_what_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    guard = guarded(
        tmp_path, "sh", "-c", "trap '' TERM; sleep 300 & echo $! > child.pid; wait", grace=0.5
    )
    child = int(wait_for_file(tmp_path / "child.pid"))
    started = time.monotonic()
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(10) == 128 + signal.SIGKILL
    assert time.monotonic() - started >= 0.5
    assert gone(child)


def test_children_left_by_a_main_that_exits_are_killed(tmp_path):
    guard = guarded(tmp_path, "sh", "-c", "sleep 300 & echo $! > child.pid; exit 3")
    child = int(wait_for_file(tmp_path / "child.pid"))
    assert guard.wait(10) == 3
    assert gone(child)


def test_a_test_process_killed_outright_leaves_nothing_behind(tmp_path):
    # A stand-in for pytest: starts the guard, then is killed with SIGKILL.
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, {str(realvllm.GUARD)!r}, *{LEAVES_A_CHILD!r}]); "
            "time.sleep(300)",
        ],
        cwd=tmp_path,
    )
    child = int(wait_for_file(tmp_path / "child.pid"))
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    assert gone(child)
