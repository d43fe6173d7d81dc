"""The per-process handle on the database: a lazily built engine and session factory.

Nothing connects at import. The engine is built on first use in each process; a process
forked after that (a Celery prefork child) notices the new pid and builds its own, so
pooled connections are never shared across processes (SQLAlchemy's pooling guide).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.busy import BusyWait
from db.engine import BEGIN_MODE_OPTION, create_db_engine
from db.errors import DatabaseBusy, DatabaseUnavailable

log = logging.getLogger("autoforge.db")


@dataclass
class WriteStats:
    """Counters of :func:`db.transaction.write_transaction`, observable by tests and metrics."""

    units: int = 0
    attempts: int = 0
    lock_retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, units: int = 0, attempts: int = 0, lock_retries: int = 0) -> None:
        with self._lock:
            self.units += units
            self.attempts += attempts
            self.lock_retries += lock_retries


class Database:
    """Engine, session factories and write statistics for one process."""

    def __init__(self, settings: Settings, *, read_only_file: Path | None = None) -> None:
        """``read_only_file``: read a local replica of the database instead (reads only,
        ``PRAGMA query_only``): ``READ_REPLICA``."""
        self.settings = settings
        self.read_only_file = read_only_file
        self.stats = WriteStats()
        self._pid: int | None = None
        self._engine: Engine | None = None
        self._factories: dict[str, sessionmaker[Session]] = {}
        #: Serializes write units of this process's threads on a local file, their waits
        #: for another process's write lock included: SQLite has one writer at a time
        #: anyway, so threads queue here (without the GIL) and only one of them polls
        #: the database while another process writes (:mod:`db.busy`).
        self.write_lock: threading.Lock | None = (
            threading.Lock() if settings.database.is_local else None
        )
        self._lock_pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        if self.read_only_file is not None:
            return f"Database(read-only replica {self.read_only_file})"
        return f"Database({self.settings.database.describe()})"

    def check_process(self) -> None:
        """Call before taking ``write_lock``: a forked child gets a fresh one."""
        self._after_fork(os.getpid())

    def _after_fork(self, pid: int) -> None:
        """A lock inherited through fork may be held by a thread that did not come along:
        the new process needs its own (replaced once per process, never while in use)."""
        if self.write_lock is not None and self._lock_pid != pid:
            self.write_lock = threading.Lock()
            self._lock_pid = pid

    @property
    def engine(self) -> Engine:
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            with self._lock:
                if self._engine is None or self._pid != pid:
                    if self._engine is not None:
                        # Inherited from the parent: drop its connections without closing them.
                        self._engine.dispose(close=False)
                    self._engine = create_db_engine(
                        self.settings, read_only_file=self.read_only_file
                    )
                    self._factories = {
                        mode: sessionmaker(
                            bind=self._engine.execution_options(**{BEGIN_MODE_OPTION: mode}),
                            expire_on_commit=False,
                        )
                        for mode in ("DEFERRED", "IMMEDIATE")
                    }
                    self._pid = pid

        return self._engine

    def dispose(self) -> None:
        """Close this process's pooled connections (at worker or API shutdown)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None
            self._pid = None

    def _session(self, begin_mode: str) -> Session:
        _ = self.engine  # (re)build the engine and factories for this process
        return self._factories[begin_mode]()

    def write_session(self) -> Session:
        """A session whose transaction starts with ``BEGIN IMMEDIATE``.

        Use :func:`db.transaction.write_transaction` instead: it commits, rolls back and
        retries on lock contention.
        """
        return self._session("IMMEDIATE")

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads: an ordinary deferred transaction, rolled back at the end.

        Its connection is taken up front. While that cannot be done because the database
        is busy (a new connection's set-up meets another process's exclusive lock) or, for
        a remote database, unreachable, it waits in Python for up to
        ``DB_BUSY_TIMEOUT_MS`` (:mod:`db.busy`). Once begun, reads of a WAL database do
        not wait for writers.
        """
        session = self._begun_read_session()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def _begun_read_session(self) -> Session:
        wait: BusyWait | None = None
        while True:
            session = self._session("DEFERRED")
            try:
                session.connection()  # check out (or open) a connection and BEGIN
            except (DatabaseBusy, DatabaseUnavailable) as exc:
                session.close()
                if isinstance(exc, DatabaseUnavailable) and self.settings.database.is_local:
                    raise  # a local file that cannot be opened is not coming back by itself
                wait = wait or BusyWait.for_reads(self.settings)
                if not wait.pause():
                    log.warning(
                        "gave up on a read after %.1f s and %d tries: %s",
                        wait.elapsed(),
                        wait.tries,
                        type(exc).__name__,
                    )
                    raise
                log.debug("database busy or unreachable (%s); a read waits", type(exc).__name__)
            else:
                return session
