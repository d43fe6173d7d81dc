"""``write_transaction``: the one way to write.

A unit of work is a function of a session. It runs inside ``BEGIN IMMEDIATE`` (so a
read-then-write unit holds the write lock from its start instead of failing with
SQLITE_BUSY when it tries to upgrade), commits or rolls back as a unit, and the session
is always closed.

Waiting is bounded by time, ``DB_WRITE_MAX_SECONDS`` for the whole unit, and happens in
Python, never inside the SDK (which would keep the GIL: :mod:`db.busy`):

- for the other writers of a local file, this process's threads and other processes
  alike, in a fair queue that needs no polling (:mod:`db.write_lock`);
- for the database's write lock: ``BEGIN IMMEDIATE`` fails at once while another
  connection holds it, and is tried again after a jittered, growing pause. The unit has
  not run yet, so these tries are not counted against ``DB_WRITE_MAX_ATTEMPTS``; a
  remote database that cannot be reached at this point is waited for the same way;
- for a unit that met a busy database after it started (a remote server may answer
  "database is locked" to any statement): the whole unit is re-run, at most
  ``DB_WRITE_MAX_ATTEMPTS`` runs in all.

Constraint violations and every other error are raised at once: retrying cannot fix
them. A remote database lost after the unit started is not retried either: whether the
commit happened is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from db.busy import BusyWait
from db.database import Database
from db.errors import DatabaseBusy, DatabaseUnavailable

T = TypeVar("T")

log = logging.getLogger("autoforge.db.write")


def write_transaction(db: Database, work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` in a write transaction, waiting out lock contention.

    ``work`` may run more than once, so it must not have effects outside the session
    (no enqueueing, no HTTP calls): do those after this returns.
    """
    wait = BusyWait.for_writes(db.settings)
    db.stats.add(units=1)
    lock = db.write_lock
    if lock is None:
        return _run(db, work, wait)
    if not lock.acquire(timeout=wait.remaining()):
        raise DatabaseBusy(
            f"database busy: other writers kept the write lock for {wait.elapsed():.1f} s"
        )
    try:
        if lock.waited:
            db.stats.add(lock_waits=1)
        return _run(db, work, wait)
    finally:
        lock.release()


def _run(db: Database, work: Callable[[Session], T], wait: BusyWait) -> T:
    settings = db.settings
    wait_when_unreachable = not settings.database.is_local
    runs = 0
    while True:
        db.stats.add(attempts=1)
        started = False
        session = db.write_session()
        try:
            with session.begin():
                # BEGIN IMMEDIATE now (after opening a connection, if the pool has none),
                # even if the unit starts with a read.
                session.connection()
                started = True
                runs += 1
                return work(session)
        except (DatabaseBusy, DatabaseUnavailable) as exc:
            if started:
                if isinstance(exc, DatabaseUnavailable) or runs >= settings.db_write_max_attempts:
                    raise
            elif isinstance(exc, DatabaseUnavailable) and not wait_when_unreachable:
                raise
            if not wait.pause():
                log.warning(
                    "gave up on a write unit after %.1f s, %d tries and %d runs: %s",
                    wait.elapsed(),
                    wait.tries,
                    runs,
                    type(exc).__name__,
                )
                raise
            db.stats.add(lock_retries=1)
            log.debug("%s; write unit tries again (try %d)", type(exc).__name__, wait.tries)
        finally:
            session.close()
