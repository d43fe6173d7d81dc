"""Claiming a job is one statement: an ``UPDATE ... RETURNING`` of the row it claims."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from db.database import Database
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus

pytestmark = pytest.mark.integration


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements ``db`` sends meanwhile (BEGIN and COMMIT are not statements)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _add(db: Database) -> Job:
    job = Job(kind="canary", arguments={}, max_attempts=3)
    return write_transaction(db, lambda s: JobRepository(s).add(job))


def test_a_claim_reads_the_row_it_claims_from_its_update(database: Database) -> None:
    job = _add(database)

    with _statements(database) as sent:
        claimed = write_transaction(
            database, lambda s: JobRepository(s).claim(job.id, lease_s=60, owner="w1:10:11")
        )

    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == (
        JobStatus.RUNNING,
        1,
        "w1:10:11",
    )
    assert claimed.started_at is not None
    assert claimed.lease_expires_at is not None
    jobs = [statement for statement in sent if " jobs" in statement]
    assert len(jobs) == 1, sent
    assert jobs[0].startswith("UPDATE jobs SET")
    assert " RETURNING " in jobs[0]
