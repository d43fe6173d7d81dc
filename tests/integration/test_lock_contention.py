"""Several OS processes writing one libSQL file at once.

Each process runs read-then-write units (read a prompt's ``version``, write it back + 1)
on the same row. Through :func:`db.transaction.write_transaction` (``BEGIN IMMEDIATE``
plus retries) every unit commits and no increment is lost. The same workload in plain
deferred transactions fails with :class:`db.errors.DatabaseBusy`, which shows that the
first test exercises real contention.

Children are started with the ``spawn`` method, so their entry points live at module
level and each builds its own settings and :class:`db.database.Database`.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.database import Database
from db.errors import DatabaseBusy
from db.models import PromptModel
from db.repositories import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt
from tests.conftest import make_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]

PROCESSES = 4
UNITS = 25
HOLD_S = 0.005  # time each unit keeps the row between its read and its write
BARRIER_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ChildReport:
    """What a child process sends back through the result queue."""

    name: str
    ok: bool
    units: int = 0
    attempts: int = 0
    lock_retries: int = 0
    committed: int = 0
    busy: int = 0
    error: str = ""


if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    ReportQueue = Queue[ChildReport]


def _read_version(session: Session, prompt_id: str) -> int:
    version = session.scalar(select(PromptModel.version).where(PromptModel.id == prompt_id))
    assert version is not None, f"prompt {prompt_id} is missing"
    return version


def _increment(session: Session, prompt_id: str) -> int:
    """A read-then-write unit: read the counter, hold it briefly, write it back + 1."""
    version = _read_version(session, prompt_id)
    time.sleep(HOLD_S)
    session.execute(
        update(PromptModel).where(PromptModel.id == prompt_id).values(version=version + 1)
    )
    return version + 1


def immediate_child(
    name: str, db_path: str, prompt_id: str, barrier: Barrier, reports: ReportQueue
) -> None:
    """Run ``UNITS`` increments through ``write_transaction``; report the write stats."""
    try:
        settings = make_settings(
            Path(db_path),
            db_busy_timeout_ms=1,
            db_write_max_attempts=100,
            db_write_max_seconds=60,
            db_write_backoff_initial_s=0.002,
            db_write_backoff_max_s=0.05,
        )
        db = Database(settings)
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
            for _ in range(UNITS):
                write_transaction(db, lambda session: _increment(session, prompt_id))
        finally:
            db.dispose()
        stats = db.stats
        reports.put(
            ChildReport(
                name=name,
                ok=True,
                units=stats.units,
                attempts=stats.attempts,
                lock_retries=stats.lock_retries,
            )
        )
    except BaseException:
        reports.put(ChildReport(name=name, ok=False, error=traceback.format_exc()))


def deferred_child(
    name: str, db_path: str, prompt_id: str, barrier: Barrier, reports: ReportQueue
) -> None:
    """The same increments in plain deferred transactions, all reads before any write.

    Every round, each process reads the counter in its own ``BEGIN`` (DEFERRED)
    transaction, waits at the barrier until all have read, then writes. Only the first
    writer of a round can commit: the others hold a read snapshot, and SQLite refuses to
    upgrade it to a write transaction (SQLITE_BUSY / SQLITE_BUSY_SNAPSHOT).
    """
    try:
        db = Database(make_settings(Path(db_path), db_busy_timeout_ms=1))
        committed = busy = 0
        try:
            for _ in range(UNITS):
                met = False  # whether this round's barrier was passed
                try:
                    with db.engine.connect() as connection, connection.begin():
                        version = connection.scalar(
                            select(PromptModel.version).where(PromptModel.id == prompt_id)
                        )
                        assert version is not None
                        met = True
                        barrier.wait(timeout=BARRIER_TIMEOUT_S)
                        time.sleep(HOLD_S)
                        connection.execute(
                            update(PromptModel)
                            .where(PromptModel.id == prompt_id)
                            .values(version=version + 1)
                        )
                except DatabaseBusy:
                    busy += 1
                    if not met:
                        # Busy before the read finished (BEGIN or the read itself, e.g.
                        # while another process checkpoints): still meet the others, or
                        # the rounds fall out of step and the barrier breaks.
                        barrier.wait(timeout=BARRIER_TIMEOUT_S)
                else:
                    committed += 1
        finally:
            db.dispose()
        reports.put(ChildReport(name=name, ok=True, committed=committed, busy=busy))
    except BaseException:
        reports.put(ChildReport(name=name, ok=False, error=traceback.format_exc()))


def _seed_counter(database: Database) -> str:
    prompt = write_transaction(
        database, lambda s: PromptRepository(s).add(Prompt(title="c", content="c", user_id="u"))
    )
    assert prompt.version == 1
    return prompt.id


def _counter(database: Database, prompt_id: str) -> int:
    with database.read_session() as session:
        return _read_version(session, prompt_id)


def _run_children(target: Any, db_path: Path, prompt_id: str) -> list[ChildReport]:
    """Start ``PROCESSES`` spawned children on ``target`` and collect their reports."""
    ctx: SpawnContext = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    reports: ReportQueue = ctx.Queue()
    processes: list[SpawnProcess] = [
        ctx.Process(
            target=target,
            args=(f"child-{i}", str(db_path), prompt_id, barrier, reports),
            name=f"contention-child-{i}",
        )
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    collected: list[ChildReport] = []
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    try:
        while len(collected) < PROCESSES and time.monotonic() < deadline:
            try:
                collected.append(reports.get(timeout=0.5))
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    break  # a child died without reporting
    finally:
        for process in processes:
            process.join(timeout=30)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
        reports.close()
        reports.join_thread()
    exit_codes = [process.exitcode for process in processes]
    assert len(collected) == PROCESSES, f"missing child reports; exit codes {exit_codes}"
    failures = [report.error for report in collected if not report.ok]
    assert failures == [], "\n".join(failures)
    assert exit_codes == [0] * PROCESSES
    return collected


@pytest.mark.timeout(240)
def test_concurrent_read_then_write_units_lose_nothing(database: Database, db_path: Path) -> None:
    prompt_id = _seed_counter(database)
    database.dispose()

    started = time.monotonic()
    reports = _run_children(immediate_child, db_path, prompt_id)
    elapsed = time.monotonic() - started

    assert _counter(database, prompt_id) == 1 + PROCESSES * UNITS, "an increment was lost"
    assert [report.units for report in reports] == [UNITS] * PROCESSES
    lock_retries = sum(report.lock_retries for report in reports)
    attempts = sum(report.attempts for report in reports)
    assert lock_retries > 0, "no contention happened: the test proves nothing"
    assert attempts == PROCESSES * UNITS + lock_retries
    print(f"{PROCESSES}x{UNITS} units in {elapsed:.2f}s, {lock_retries} lock retries")


@pytest.mark.timeout(240)
def test_deferred_read_then_write_fails_with_database_busy(
    database: Database, db_path: Path
) -> None:
    prompt_id = _seed_counter(database)
    database.dispose()

    reports = _run_children(deferred_child, db_path, prompt_id)

    busy = sum(report.busy for report in reports)
    committed = sum(report.committed for report in reports)
    assert busy > 0, "plain deferred transactions did not collide"
    assert [report.name for report in reports if report.busy] != []
    # All reads of a round precede its writes, so at most one writer per round wins (none
    # when a loser's failed upgrade holds the write lock just as the winner asks for it).
    assert 0 < committed <= UNITS
    assert busy + committed == PROCESSES * UNITS
    # SQLite refuses instead of losing an update: the counter matches the commits.
    assert _counter(database, prompt_id) == 1 + committed
