"""Waiting for something a test can observe: the one polling loop of the test suite.

A test never sleeps a fixed time for something it can see (a log line, a ledger row, a
process gone, a port answering): it polls until the thing holds, and fails at a deadline
naming what it waited for and showing what it saw (``describe``).

The first polls come quickly, since most conditions hold within milliseconds; the pause
then doubles up to ``interval``, so that a condition that takes seconds costs little CPU
on a loaded machine. A probe is called one last time at the deadline, so a condition
that came true during the last pause is not reported as missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

import pytest

#: The longest pause between two polls.
POLL_INTERVAL_S = 0.1
#: The first pause; each next one is twice as long, up to the interval.
FIRST_PAUSE_S = 0.005

T = TypeVar("T")


def poll(
    probe: Callable[[], T | Literal[False] | None],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL_S,
) -> T | None:
    """Call ``probe`` until it returns something other than None or False, and return
    that; None if it did not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = min(FIRST_PAUSE_S, interval)
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, interval)


def wait_for(
    probe: Callable[[], T | Literal[False] | None],
    *,
    timeout: float,
    what: str,
    describe: Callable[[], str] = lambda: "",
    interval: float = POLL_INTERVAL_S,
) -> T:
    """Poll ``probe`` until it returns something other than None or False, and return
    that; fail at the deadline.

    The failure names ``what`` was awaited and adds ``describe()`` (ledger rows, logs).
    A probe may itself fail the test at once (a process that exited, a job that ended
    with another status).
    """
    value = poll(probe, timeout=timeout, interval=interval)
    if value is None:
        pytest.fail(f"{what}: not within {timeout:g} s\n{describe()}", pytrace=False)
    return value


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    describe: Callable[[], str] = lambda: "",
    interval: float = POLL_INTERVAL_S,
) -> None:
    """Poll ``condition`` until it holds; fail at the deadline (see :func:`wait_for`)."""
    wait_for(condition, timeout=timeout, what=what, describe=describe, interval=interval)
