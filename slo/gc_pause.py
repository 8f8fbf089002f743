"""Pausing Python's cyclic garbage collector while the service reads a fleet's figures.

Answering for hundreds of deployments decodes tens of thousands of samples: hundreds of
thousands of dicts and lists, alive until the answer is built, none of them in a reference
cycle. Each of those allocations counts towards the collector's next pass, and every pass
over the older generations traverses all of them again: at 500 deployments the collector
took more than a third of the service's time (bench/slo.py). Reference counting still frees
everything as usual while paused; cycles made meanwhile wait for the next pass.

The switch is process-wide, and requests run concurrently (the page asks for statuses and
advice at once), so pauses are counted: the first to begin turns the collector off, the last
to end turns it back on, and only if it was on before.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def pausing(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run with the collector paused."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with paused():
            return fn(*args, **kwargs)

    return wrapper
