"""A one-line progress bar on stderr, for a person watching a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24
MIN_INTERVAL = 0.1  # seconds between redraws


class Progress:
    """Redraws `[#####     ]  42%  120 done  118 ok  2 failed  12.0 s` in place.

    The fraction is of the request count or of the duration, whichever is nearer its end.
    """

    def __init__(self, requests: int | None, duration: float | None, stream: TextIO | None = None):
        self.requests = requests
        self.duration = duration
        self.stream = stream if stream is not None else sys.stderr
        self._drawn = 0.0
        self._width = 0

    def update(self, done: int, failed: int, elapsed: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < MIN_INTERVAL:
            return
        self._drawn = now
        fractions = []
        if self.requests:
            fractions.append(done / self.requests)
        if self.duration:
            fractions.append(elapsed / self.duration)
        fraction = min(1.0, max(fractions, default=0.0))
        filled = round(fraction * WIDTH)
        line = (
            f"[{'#' * filled}{' ' * (WIDTH - filled)}] {fraction:4.0%}  {done} done  "
            f"{done - failed} ok  {failed} failed  {elapsed:.1f} s"
        )
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
