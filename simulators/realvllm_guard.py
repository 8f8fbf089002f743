"""Run a command in a process group of its own and take the whole group down with it:
`python realvllm_guard.py [--grace SECONDS] COMMAND...`.

vLLM's API server starts an engine core (and multiprocessing's resource tracker) that outlive
it when it is killed outright. The guard starts the server in a new process group, forwards
SIGTERM and SIGINT to that group, and when the server has exited kills whatever is left of
the group (SIGKILL; also when the group is still there `--grace` seconds after a SIGTERM,
10 by default). It asks the kernel for SIGTERM when its own parent dies, so even a test run
or a demo that is killed with SIGKILL leaves no engine behind. Its exit code is the
command's (128 + N for a command ended by signal N, as a shell reports it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 10.0


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def main(args: list[str], grace: float = GRACE_SECONDS) -> int:
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    child = subprocess.Popen(args, start_new_session=True)

    deadline: list[float] = []

    def forward(sig: int, _frame: object) -> None:
        _kill_group(child.pid, sig)
        deadline[:] = deadline or [time.monotonic() + grace]

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if os.getppid() != parent:  # the parent died before the kernel was told to warn us
        forward(signal.SIGTERM, None)
    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if deadline and time.monotonic() > deadline[0]:
                _kill_group(child.pid, signal.SIGKILL)
    _kill_group(child.pid, signal.SIGKILL)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    argv = sys.argv[1:]
    grace = GRACE_SECONDS
    if argv[:1] == ["--grace"] and len(argv) > 1:
        grace = float(argv[1])
        argv = argv[2:]
    if not argv:
        sys.exit("usage: python realvllm_guard.py [--grace SECONDS] COMMAND [ARGS...]")
    sys.exit(main(argv, grace))
