"""Disk space of a local database file: free pages given back, the WAL checkpointed.

Pages freed by deletes (pruning) go on SQLite's freelist; later writes reuse them, but the
file does not shrink by itself. ``VACUUM`` would shrink it, and ``VACUUM INTO`` would
copy it compactly, but libSQL's both corrupt vector index metadata, so neither is ever
run. Instead a new local file is created with ``auto_vacuum=INCREMENTAL``
(:mod:`db.engine` sets it before anything else on every connection; SQLite keeps it
only on a file that holds no table yet), and :func:`give_back_free_pages` runs
``PRAGMA incremental_vacuum(N)``: a page-level move of up to N pages from the end of the
file into free slots, then a truncation, in short write transactions of its own. It
re-runs no SQL, so vector indexes survive it (tested with ``libsql_vector_idx``).

A file created before (``auto_vacuum`` NONE) cannot be switched without ``VACUUM``: it
keeps its size, and its free pages are reused by later writes.

In WAL mode the file shrinks, and the WAL file is emptied, at a checkpoint:
:func:`checkpoint`. None of this applies to a remote database: its server keeps its files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.busy import BusyWait
from db.database import Database
from db.errors import classify
from db.transaction import write_transaction

log = logging.getLogger("autoforge.db.space")

AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}


@dataclass(frozen=True, slots=True)
class FileSpace:
    """Pages of the database file (the WAL not included) and its auto-vacuum mode."""

    page_size: int
    pages: int
    free_pages: int
    auto_vacuum: str

    @property
    def size_bytes(self) -> int:
        return self.page_size * self.pages

    @property
    def free_bytes(self) -> int:
        return self.page_size * self.free_pages


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What ``PRAGMA wal_checkpoint(TRUNCATE)`` did: ``done`` when every frame was copied
    into the database file and the WAL emptied (readers or a writer can prevent it)."""

    done: bool
    wal_pages: int
    copied_pages: int


def file_space(db: Database) -> FileSpace:
    """Page size, page count, free pages and auto-vacuum mode of the database file."""
    with db.read_session() as session:
        connection = session.connection()

        def pragma(name: str) -> int:
            return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())

        return FileSpace(
            page_size=pragma("page_size"),
            pages=pragma("page_count"),
            free_pages=pragma("freelist_count"),
            auto_vacuum=AUTO_VACUUM_MODES.get(pragma("auto_vacuum"), "unknown"),
        )


def give_back_free_pages(
    db: Database,
    *,
    step_pages: int,
    pause_s: Callable[[float], float],
    deadline: float,
) -> int:
    """Shrink the file by its free pages, ``step_pages`` at a time, each step its own
    write transaction, sleeping ``pause_s(step's duration)`` between steps so that other
    writers get the lock. Stops when no free page is left or at ``deadline``
    (``time.monotonic()``). Returns how many pages were given back.

    Does nothing on a remote database or a file whose auto-vacuum mode is not
    incremental (it cannot shrink without ``VACUUM``).
    """
    if not db.settings.database.is_local:
        return 0
    space = file_space(db)
    if space.auto_vacuum != "incremental":
        return 0
    given_back = 0
    free = space.free_pages
    while free > 0 and time.monotonic() < deadline:
        started = time.monotonic()
        free_after = write_transaction(db, lambda s: _vacuum_step(s, step_pages))
        given_back += free - free_after
        if free_after >= free:  # nothing moved: leave it for the next run
            break
        free = free_after
        if free > 0:
            time.sleep(pause_s(time.monotonic() - started))
    return given_back


def _vacuum_step(session: Session, pages: int) -> int:
    """One ``incremental_vacuum`` step in the session's write transaction; returns the
    free pages left."""
    connection = session.connection()
    # The SDK refuses a statement that yields rows without columns, as this pragma does
    # (once per page moved) through execute(); executescript() steps it to the end.
    raw: Any = connection.connection.dbapi_connection
    raw.executescript(f"PRAGMA incremental_vacuum({int(pages):d});")
    return int(connection.exec_driver_sql("PRAGMA freelist_count").scalar_one())


def checkpoint(db: Database, *, budget_s: float = 2.0) -> Checkpoint | None:
    """Copy the WAL into the database file and empty it (``None`` for a remote database).

    A ``PASSIVE`` checkpoint first does the copying without blocking anyone; the
    ``TRUNCATE`` after it, which needs a moment without writers or old readers, has only
    what was written meanwhile left to copy. It is tried again for up to ``budget_s``
    while others keep it from completing.
    """
    if not db.settings.database.is_local:
        return None
    wait = BusyWait(budget_s, db.settings.db_write_backoff_initial_s, 0.1)
    pooled = db.engine.raw_connection()
    raw: Any = pooled.dbapi_connection
    try:
        # A pooled connection outside any transaction (the SDK's autocommit mode): a
        # checkpoint cannot run inside one.
        _wal_checkpoint(raw, "PASSIVE")
        while True:
            busy, wal_pages, copied = _wal_checkpoint(raw, "TRUNCATE")
            if not busy or not wait.pause():
                return Checkpoint(done=not busy, wal_pages=wal_pages, copied_pages=copied)
    finally:
        pooled.close()  # back to the pool


def _wal_checkpoint(raw: Any, mode: str) -> tuple[bool, int, int]:
    try:
        busy, wal_pages, copied = raw.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except Exception as exc:
        typed = classify(exc)
        if typed is None:
            raise
        raise typed from exc
    return bool(busy), int(wal_pages), int(copied)
