"""The machine-wide write lock of a local database file (:mod:`db.write_lock`).

Real processes hold it: a wait that times out gives up without leaving the lock taken,
a holder that dies loses it at once, and writers of one process (one lock per process
and file) and of several processes never overlap.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from db.write_lock import FileWriteLock, lock_file_for, write_lock_for

pytestmark = [pytest.mark.integration]

WAIT_S = 30.0


def hold(path: str, taken: Event, release: Event) -> None:
    """Take the lock, say so, and keep it until told to let go (or killed)."""
    lock = FileWriteLock(Path(path))
    assert lock.acquire(timeout=WAIT_S)
    taken.set()
    release.wait(WAIT_S)
    lock.release()


def count(database: str, counter: str, rounds: int) -> None:
    """Read-modify-write a counter file ``rounds`` times under the lock."""
    lock = write_lock_for(Path(database))
    target = Path(counter)
    for _ in range(rounds):
        assert lock.acquire(timeout=WAIT_S)
        try:
            target.write_text(str(int(target.read_text()) + 1))
        finally:
            lock.release()


def _holder(path: Path) -> tuple[SpawnProcess, Event, Event]:
    ctx = multiprocessing.get_context("spawn")
    taken, release = ctx.Event(), ctx.Event()
    process = ctx.Process(target=hold, args=(str(path), taken, release))
    process.start()
    assert taken.wait(WAIT_S), "the holder never took the lock"
    return process, taken, release


def test_a_timed_out_wait_leaves_the_lock_free_once_the_holder_lets_go(tmp_path: Path) -> None:
    path = lock_file_for(tmp_path / "app.db")
    process, _, release = _holder(path)
    lock = FileWriteLock(path)
    try:
        assert lock.acquire(timeout=0.2) is False
        assert lock.acquire(timeout=0.0) is False
    finally:
        release.set()
        process.join(WAIT_S)
    assert process.exitcode == 0
    # The abandoned waits got the lock when the holder let go, and dropped it.
    assert lock.acquire(timeout=WAIT_S)
    lock.release()
    assert lock.acquire(timeout=WAIT_S)
    lock.release()


def test_a_holder_that_dies_loses_the_lock(tmp_path: Path) -> None:
    path = lock_file_for(tmp_path / "app.db")
    process, _, _ = _holder(path)
    lock = FileWriteLock(path)
    waiter_got: list[bool] = []
    waiter = threading.Thread(target=lambda: waiter_got.append(lock.acquire(timeout=WAIT_S)))
    waiter.start()
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(WAIT_S)
    waiter.join(WAIT_S)
    assert waiter_got == [True]
    lock.release()


def test_writers_of_several_processes_and_threads_never_overlap(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    counter = tmp_path / "counter"
    counter.write_text("0")
    rounds, processes, threads = 200, 3, 3
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=count, args=(str(database), str(counter), rounds))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    local = [
        threading.Thread(target=count, args=(str(database), str(counter), rounds))
        for _ in range(threads)
    ]
    for thread in local:
        thread.start()
    for thread in local:
        thread.join(WAIT_S * 4)
    for child in children:
        child.join(WAIT_S * 4)
    assert [child.exitcode for child in children] == [0] * processes
    assert int(counter.read_text()) == rounds * (processes + threads)
