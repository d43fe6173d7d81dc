"""The per-process handle on the database: a lazily built engine and session factory.

Nothing connects at import. The engine is built on first use in each process; a process
forked after that (a Celery prefork child) notices the new pid and builds its own, so
pooled connections are never shared across processes (SQLAlchemy's pooling guide).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.engine import BEGIN_MODE_OPTION, create_db_engine


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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = WriteStats()
        self._pid: int | None = None
        self._engine: Engine | None = None
        self._factories: dict[str, sessionmaker[Session]] = {}
        #: Serializes write transactions of this process's threads on a local file. The
        #: libSQL SDK keeps the GIL while a statement waits out ``busy_timeout``, so a
        #: thread waiting for the write lock would stop the thread holding it from
        #: committing: both would stall for the whole timeout. SQLite has one writer at a
        #: time anyway; other processes still meet through ``busy_timeout``.
        self.write_lock: threading.Lock | None = (
            threading.Lock() if settings.database.is_local else None
        )
        self._lock_pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
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
                    self._engine = create_db_engine(self.settings)
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
        """A session for reads: an ordinary deferred transaction, rolled back at the end."""
        session = self._session("DEFERRED")
        try:
            yield session
        finally:
            session.rollback()
            session.close()
