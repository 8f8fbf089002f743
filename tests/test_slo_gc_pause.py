"""The SLO service pauses the cyclic garbage collector while it reads a fleet's figures, and
always gives it back as it found it, whatever overlaps and fails."""

from __future__ import annotations

import gc
import threading

import pytest

from inferwatch.slo import gc_pause


@pytest.fixture(autouse=True)
def _collector_on():
    gc.enable()
    yield
    gc.enable()


def test_paused_turns_the_collector_off_and_back_on() -> None:
    with gc_pause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outermost() -> None:
    with gc_pause.paused():
        with gc_pause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with gc_pause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_exception_still_ends_the_pause() -> None:
    @gc_pause.pausing
    def failing() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing()
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_end_with_the_last() -> None:
    """The first request ends while the second still runs: the collector stays off until the
    second ends too."""
    first_in, second_in, first_out, second_may_end = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def first() -> None:
        with gc_pause.paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with gc_pause.paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()
            second_may_end.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_out.wait(5)
    second_may_end.set()
    for t in threads:
        t.join(5)
    assert seen == {"after the first ended": False}
    assert gc.isenabled()
