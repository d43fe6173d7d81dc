"""The write lock of a local database file, shared by every process on the machine.

SQLite lets one connection write at a time. Without a queue of their own, writers of
different processes find out by failing ``BEGIN IMMEDIATE`` and sleeping a growing,
jittered pause before trying again (:mod:`db.busy`): the lock sits idle between one
writer's commit and the next one's wake-up, and an unlucky writer keeps losing to those
that happen to wake up at the right time.

So writers first queue for a lock file next to the database (``<file>-writelock``) with
``fcntl`` locks: the kernel wakes a waiter the moment the lock is free, the wait
releases the GIL, and a process that dies holding it loses it at once. Two locks (two
bytes of the file, POSIX record locks) make the queue fair enough: a writer takes the
*gate*, then the *main* lock, then lets the gate go.
The writer holding the gate is the only one waiting for the main lock, so it is the one
that gets it next; a writer that has just released the main lock must queue at the gate
behind the others instead of taking the lock straight back.

Within a process, threads queue on a ``threading.Lock`` first (POSIX record locks belong
to a process, not to a thread).

Waits are bounded (``timeout``): a blocking ``fcntl`` lock has no timeout of its own, so a
contended wait happens in a helper thread that the caller stops waiting for when the
time is up. Such an abandoned wait still ends (when the holder lets go): it then drops
the lock it got, and only then may this process's threads queue again.

``BEGIN IMMEDIATE`` and :mod:`db.busy`'s waits stay behind this lock, for writers that
do not take it (another tool on the same file).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

__all__ = ["FileWriteLock", "lock_file_for", "write_lock_for"]

_shared: dict[Path, FileWriteLock] = {}
_shared_guard = threading.Lock()


def lock_file_for(database: Path) -> Path:
    """The lock file of a database file."""
    return database.with_name(database.name + "-writelock")


def write_lock_for(database: Path) -> FileWriteLock:
    """The one write lock of ``database`` in this process.

    One per process and file, however many :class:`db.database.Database` handles the
    process makes: POSIX record locks belong to the process, so two lock objects on
    one file would not keep each other out.
    """
    path = lock_file_for(database.resolve())
    with _shared_guard:
        lock = _shared.get(path)
        if lock is None:
            lock = _shared[path] = FileWriteLock(path)
        return lock


class FileWriteLock:
    """``acquire(timeout)`` / ``release()``, like a ``threading.Lock``, across processes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pid = os.getpid()
        self._threads = threading.Lock()
        self._fd: int | None = None  # this process's description of the lock file
        self._mutex = threading.Lock()  # guards _stale
        self._stale = 0  # abandoned waits still running; _threads is held meanwhile
        #: Whether the last successful :meth:`acquire` had to wait for another process
        #: (read it while holding the lock).
        self.waited = False

    def __repr__(self) -> str:
        return f"FileWriteLock({self._path})"

    def _check_process(self) -> None:
        """A forked child gets its own locks and its own file descriptions."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._threads = threading.Lock()
            self._mutex = threading.Lock()
            self._stale = 0
            self._fd = None  # POSIX locks are not inherited: the child holds none

    def _open(self) -> int:
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def acquire(self, timeout: float) -> bool:
        """Take the lock within ``timeout`` seconds; ``False`` if it could not."""
        self._check_process()
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._threads.acquire(timeout=max(0.0, timeout)):
            return False
        try:
            fd = self._open()
            self.waited = False
            # A False from _lock hands _threads to the abandoned wait, which releases it.
            if not self._lock(fd, _GATE, deadline):
                return False
            try:
                if not self._lock(fd, _MAIN, deadline):
                    return False
            finally:
                _unlock(fd, _GATE)
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        assert self._fd is not None
        _unlock(self._fd, _MAIN)
        self._threads.release()

    def _lock(self, fd: int, offset: int, deadline: float) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            return True
        except OSError:
            self.waited = True  # held elsewhere: wait for it
        got = threading.Event()
        gave_up = False
        failed: list[OSError] = []

        def wait() -> None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
            except OSError as exc:  # not expected on a local file
                with self._mutex:
                    failed.append(exc)
                    got.set()
                    if gave_up:
                        self._stale -= 1
                        if self._stale == 0:
                            self._threads.release()
                return
            with self._mutex:
                if not gave_up:
                    got.set()
                    return
                _unlock(fd, offset)
                self._stale -= 1
                if self._stale == 0:
                    self._threads.release()

        helper = threading.Thread(target=wait, name="db-write-lock-wait", daemon=True)
        helper.start()
        if not got.wait(max(0.0, deadline - time.monotonic())):
            with self._mutex:
                if not got.is_set():
                    gave_up = True
                    self._stale += 1
                    return False
        if failed:
            raise failed[0]
        return True


_GATE = 0
_MAIN = 1


def _unlock(fd: int, offset: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
