"""``write_transaction`` on real libSQL files: atomic units, BEGIN IMMEDIATE, bounded retries.

Lock contention comes from a second, raw libSQL connection that holds the write lock
(``BEGIN IMMEDIATE``) on the same file, so every case here is deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libsql
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.settings import Settings
from db.database import Database
from db.errors import CheckViolation, ConstraintViolation, DatabaseBusy, UniqueViolation
from db.models import PromptModel
from db.repositories import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt
from tests.conftest import make_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
]

DatabaseFactory = Callable[..., Database]


class Boom(RuntimeError):
    """An application error raised by a unit of work halfway through."""


def _prompt(**overrides: Any) -> Prompt:
    values: dict[str, Any] = {"title": "t", "content": "c", "user_id": "user-1", **overrides}
    return Prompt(**values)


def _prompt_count(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(PromptModel)) or 0


def _raw_connection(path: Path) -> Any:
    """A libSQL connection outside the project's engine that never waits on a lock."""
    connection = libsql.connect(str(path), isolation_level=None, timeout=0)
    connection.execute("PRAGMA busy_timeout=0")
    return connection


@pytest.fixture
def make_database(migrated: Settings, db_path: Path) -> Iterator[DatabaseFactory]:
    """Build ``Database`` handles on the migrated file with overridden settings."""
    made: list[Database] = []

    def make(**overrides: Any) -> Database:
        db = Database(make_settings(db_path, **overrides))
        made.append(db)
        return db

    yield make
    for db in made:
        db.dispose()


@pytest.fixture
def lock_holder(migrated: Settings, db_path: Path) -> Iterator[Any]:
    """A raw connection for holding the write lock; rolled back and closed afterwards."""
    connection = _raw_connection(db_path)
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


# 1. A unit that fails halfway leaves nothing behind.


def test_application_error_halfway_rolls_back_the_whole_unit(database: Database) -> None:
    def unit(session: Session) -> None:
        repo = PromptRepository(session)
        repo.add(_prompt(title="first"))
        repo.add(_prompt(title="second"))
        raise Boom("failed after two inserts")

    with pytest.raises(Boom, match="failed after two inserts"):
        write_transaction(database, unit)

    assert _prompt_count(database) == 0
    assert (database.stats.units, database.stats.attempts, database.stats.lock_retries) == (
        1,
        1,
        0,
    )


def test_check_violation_halfway_rolls_back_the_whole_unit(database: Database) -> None:
    first = _prompt(title="valid")

    def unit(session: Session) -> None:
        repo = PromptRepository(session)
        repo.add(first)
        repo.add(_prompt(title="invalid", version=0))  # CHECK (version >= 1)

    with pytest.raises(CheckViolation) as excinfo:
        write_transaction(database, unit)

    assert excinfo.value.constraint == "ck_prompts_version"
    assert _prompt_count(database) == 0
    with database.read_session() as session:
        assert PromptRepository(session).get(first.id, include_deleted=True) is None


def test_committed_unit_is_visible_and_a_later_failure_does_not_touch_it(
    database: Database,
) -> None:
    kept = write_transaction(database, lambda s: PromptRepository(s).add(_prompt(title="kept")))

    def failing(session: Session) -> None:
        PromptRepository(session).add(_prompt(title="lost"))
        raise Boom("nope")

    with pytest.raises(Boom):
        write_transaction(database, failing)

    with database.read_session() as session:
        titles = session.scalars(select(PromptModel.title)).all()
    assert titles == ["kept"]
    assert kept.created_at is not None


# 2. Constraint violations are never retried.


@pytest.mark.parametrize("kind", ["check", "unique"])
def test_constraint_violations_are_attempted_exactly_once(database: Database, kind: str) -> None:
    existing = write_transaction(database, lambda s: PromptRepository(s).add(_prompt()))
    before = (database.stats.units, database.stats.attempts, database.stats.lock_retries)
    calls = 0

    def unit(session: Session) -> None:
        nonlocal calls
        calls += 1
        if kind == "check":
            PromptRepository(session).add(_prompt(version=-1))
        else:
            PromptRepository(session).add(_prompt(id=existing.id))

    expected: type[ConstraintViolation] = CheckViolation if kind == "check" else UniqueViolation
    with pytest.raises(expected):
        write_transaction(database, unit)

    assert calls == 1
    after = (database.stats.units, database.stats.attempts, database.stats.lock_retries)
    assert after == (before[0] + 1, before[1] + 1, before[2])
    assert _prompt_count(database) == 1


# 3. Lock and busy errors are retried.


def test_busy_database_is_retried_until_the_lock_is_released(
    make_database: DatabaseFactory, lock_holder: Any
) -> None:
    db = make_database(
        db_busy_timeout_ms=50,
        db_write_max_attempts=100,
        db_write_max_seconds=20,
        db_write_backoff_max_s=0.1,
    )
    calls = 0

    def unit(session: Session) -> Prompt:
        nonlocal calls
        calls += 1
        return PromptRepository(session).add(_prompt(title="after the lock"))

    lock_holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: lock_holder.execute("ROLLBACK"))
    started = time.monotonic()
    release.start()
    try:
        stored = write_transaction(db, unit)
    finally:
        release.cancel()
        release.join(timeout=5)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.45, "the unit cannot have committed while the lock was held"
    assert db.stats.lock_retries > 0
    assert db.stats.attempts == db.stats.lock_retries + 1
    # A failed attempt fails at BEGIN IMMEDIATE, before the unit runs.
    assert calls == 1
    with db.read_session() as session:
        assert PromptRepository(session).get(stored.id) is not None


# 4. Waits and re-runs are bounded.


def test_a_unit_that_meets_a_busy_database_midway_runs_at_most_max_attempts_times(
    make_database: DatabaseFactory,
) -> None:
    """What a remote server's "database is locked" to a statement inside the unit does:
    the whole unit is re-run, up to DB_WRITE_MAX_ATTEMPTS runs."""
    db = make_database(
        db_write_max_attempts=3,
        db_write_max_seconds=10,
        db_write_backoff_initial_s=0.01,
        db_write_backoff_max_s=0.05,
    )
    calls = 0

    def unit(session: Session) -> None:
        nonlocal calls
        calls += 1
        PromptRepository(session).add(_prompt(title=f"run {calls}"))
        raise DatabaseBusy("database is locked")

    with pytest.raises(DatabaseBusy, match="database is locked"):
        write_transaction(db, unit)

    assert calls == 3
    assert db.stats.attempts == 3
    assert db.stats.lock_retries == 2
    assert db.stats.units == 1
    assert _prompt_count(db) == 0, "a busy run must leave nothing behind"


def test_lock_never_released_raises_database_busy_after_max_seconds(
    make_database: DatabaseFactory, lock_holder: Any
) -> None:
    db = make_database(
        db_write_max_attempts=3,
        db_write_max_seconds=0.5,
        db_write_backoff_initial_s=0.01,
        db_write_backoff_max_s=0.05,
    )
    lock_holder.execute("BEGIN IMMEDIATE")
    calls = 0

    def unit(session: Session) -> None:
        nonlocal calls
        calls += 1

    started = time.monotonic()
    with pytest.raises(DatabaseBusy, match="database is locked"):
        write_transaction(db, unit)
    elapsed = time.monotonic() - started

    # Waiting for the write lock is bounded by time, not by DB_WRITE_MAX_ATTEMPTS: the
    # unit never ran, and it tried BEGIN IMMEDIATE many more times than 3 in 0.5 s.
    assert elapsed >= 0.5
    assert calls == 0
    assert db.stats.attempts > 3
    assert db.stats.lock_retries == db.stats.attempts - 1


# 5. BEGIN IMMEDIATE is really used; reads do not take the write lock.


def test_write_unit_holds_the_write_lock_from_its_start(database: Database, db_path: Path) -> None:
    existing = write_transaction(database, lambda s: PromptRepository(s).add(_prompt()))
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def unit(session: Session) -> None:
        # Only a read so far: a deferred transaction would not hold the write lock yet.
        assert PromptRepository(session).get(existing.id) is not None
        inside.set()
        if not release.wait(timeout=20):
            raise TimeoutError("the test never released the unit")

    def run() -> None:
        try:
            write_transaction(database, unit)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    other = _raw_connection(db_path)
    writer = threading.Thread(target=run, name="paused-write-unit")
    writer.start()
    try:
        assert inside.wait(timeout=20), "the unit never started"
        with pytest.raises(ValueError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")
        assert not other.in_transaction
        # WAL: plain reads still go ahead next to the writer.
        assert other.execute("SELECT count(*) FROM prompts").fetchone() == (1,)
    finally:
        release.set()
        writer.join(timeout=20)
        other.close()
    assert not writer.is_alive()
    assert errors == []


def test_read_session_does_not_take_the_write_lock(database: Database, db_path: Path) -> None:
    write_transaction(database, lambda s: PromptRepository(s).add(_prompt()))
    other = _raw_connection(db_path)
    try:
        with database.read_session() as session:
            # The read transaction is open (a snapshot is held) while the other connection
            # takes the write lock.
            assert session.scalar(select(func.count()).select_from(PromptModel)) == 1
            assert session.in_transaction()
            other.execute("BEGIN IMMEDIATE")
            other.execute("DELETE FROM prompts")
            other.execute("COMMIT")
            # Still the snapshot taken before the other connection's commit.
            assert session.scalar(select(func.count()).select_from(PromptModel)) == 1
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    assert _prompt_count(database) == 0


# 6. Threads of one process take turns instead of meeting in busy_timeout.


def test_threads_of_one_process_take_turns_without_lock_errors(
    make_database: DatabaseFactory,
) -> None:
    """The SDK keeps the GIL while it waits on busy_timeout: a thread waiting there would
    stop the holder from committing. The per-process write lock makes them queue instead,
    so no attempt ever meets a busy database."""
    db = make_database(db_busy_timeout_ms=3000)
    inside = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def unit(session: Session) -> None:
        PromptRepository(session).add(_prompt())
        time.sleep(0.1)  # hold the write lock while the other thread arrives

    def writer() -> None:
        try:
            inside.wait()
            write_transaction(db, unit)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert _prompt_count(db) == 2
    assert db.stats.lock_retries == 0
    assert db.stats.attempts == 2
