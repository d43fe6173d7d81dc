"""``write_transaction``: the one way to write.

A unit of work is a function of a session. It runs inside ``BEGIN IMMEDIATE`` (so a
read-then-write unit takes the write lock up front and waits on ``busy_timeout`` instead
of failing with SQLITE_BUSY when it tries to upgrade), commits or rolls back as a unit,
and the session is always closed. If the database is locked or busy the *whole* unit is
re-run with exponential backoff and jitter, within a bounded number of attempts and
total time (seed BP#4, section 6.2). Constraint violations and every other error are
raised at once: retrying cannot fix them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from db.database import Database
from db.errors import DatabaseBusy

T = TypeVar("T")

log = logging.getLogger("autoforge.db.write")


def write_transaction(db: Database, work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` in a write transaction, re-running it on lock contention.

    ``work`` may run more than once, so it must not have effects outside the session
    (no enqueueing, no HTTP calls): do those after this returns.
    """
    settings = db.settings

    def before_sleep(state: RetryCallState) -> None:
        db.stats.add(lock_retries=1)
        log.info(
            "database busy, re-running write unit (attempt %d, waiting %.3fs)",
            state.attempt_number,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception_type(DatabaseBusy),
        stop=stop_after_attempt(settings.db_write_max_attempts)
        | stop_before_delay(settings.db_write_max_seconds),
        wait=wait_random_exponential(
            multiplier=settings.db_write_backoff_initial_s, max=settings.db_write_backoff_max_s
        ),
        before_sleep=before_sleep,
        reraise=True,
    )
    db.stats.add(units=1)
    result: T = retrying(_run_once, db, work)
    return result


def _run_once(db: Database, work: Callable[[Session], T]) -> T:
    db.check_process()
    if db.write_lock is None:
        return _attempt(db, work)
    with db.write_lock:
        return _attempt(db, work)


def _attempt(db: Database, work: Callable[[Session], T]) -> T:
    db.stats.add(attempts=1)
    session = db.write_session()
    try:
        with session.begin():
            # Issue BEGIN IMMEDIATE now, even if the unit starts with a read.
            session.connection()
            return work(session)
    finally:
        session.close()
