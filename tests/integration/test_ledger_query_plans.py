"""Queries on the job ledger seek an index, however long it grows.

Each test records the statements a repository call (or an API request) really ran, with
their parameters, and asks SQLite for their plans (``EXPLAIN QUERY PLAN`` through
:func:`db.explain.explain`): a ``SCAN jobs`` reads the whole ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session

from core.settings import Settings
from db.column_types import utcnow
from db.database import Database
from db.explain import explain, render_plan
from db.models import JobModel
from db.repositories.jobs import JobCursor, JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from tests.support.api import AUTH, api_settings, client_for, ledger

pytestmark = pytest.mark.integration

T = TypeVar("T")
Statement = tuple[str, tuple[Any, ...]]


@contextmanager
def _recording(target: Any) -> Iterator[list[Statement]]:
    """Statements on ``jobs`` that ``target`` (an engine, or every engine) runs meanwhile."""
    seen: list[Statement] = []

    def record(_c: Any, _cur: Any, sql: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if " jobs" in sql and sql.lstrip().startswith(("SELECT", "DELETE", "UPDATE")):
            seen.append((sql, tuple(parameters or ())))

    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)


def _plan(db: Database, statement: Statement) -> str:
    return render_plan(explain(db, *statement))


def _read_plan(db: Database, call: Callable[[JobRepository], T]) -> tuple[T, str]:
    with _recording(db.engine) as seen, db.read_session() as session:
        result = call(JobRepository(session))
    [statement] = seen
    return result, _plan(db, statement)


def _add(db: Database, kind: str = "canary", **values: Any) -> Job:
    job = write_transaction(
        db, lambda s: JobRepository(s).add(Job(kind=kind, arguments={}, max_attempts=3))
    )
    if values:
        write_transaction(
            db,
            lambda s: s.execute(update(JobModel).where(JobModel.id == job.id).values(**values)),
        )
    return job


@pytest.fixture
def jobs(database: Database) -> list[Job]:
    """A small ledger of every status and two kinds (plans do not depend on its size)."""
    now = utcnow()
    made = []
    for i in range(30):
        status = ("succeeded", "failed", "cancelled", "queued", "running")[i % 5]
        finished = now - timedelta(days=i) if i % 5 < 3 else None
        made.append(
            _add(
                database,
                "evaluation" if i % 2 else "canary",
                status=status,
                finished_at=finished,
                published_at=None if i % 10 == 3 else now,
            )
        )
    return made


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        pytest.param({}, "idx_jobs_created_at", id="all"),
        pytest.param({"status": JobStatus.FAILED}, "idx_jobs_status_created_at", id="status"),
        pytest.param({"kind": "canary"}, "idx_jobs_kind_created_at", id="kind"),
    ],
)
def test_keyset_pages_seek_the_row_value(
    database: Database, jobs: list[Job], filters: dict[str, Any], index: str
) -> None:
    with database.read_session() as session:
        first = JobRepository(session).list_recent(limit=2, **filters)
    last = first[-1]
    assert last.created_at is not None
    cursor = JobCursor(last.created_at, last.id)
    page, plan = _read_plan(database, lambda r: r.list_recent(limit=50, after=cursor, **filters))
    assert page, "the second page has rows"
    assert f"USING INDEX {index} (" in plan, plan
    assert "(created_at,id)<(?,?))" in plan, plan
    assert "SCAN jobs" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_the_sweepers_work_list_reads_the_unfinished_jobs_index(
    database: Database, jobs: list[Job]
) -> None:
    due, plan = _read_plan(database, lambda r: r.due_for_publishing(republish_after_s=300))
    assert {job.status for job in due} == {JobStatus.QUEUED}, "the never-published ones"
    assert "SEARCH jobs USING INDEX idx_jobs_unfinished (status=?)" in plan, plan
    assert "SCAN jobs" not in plan, plan


def test_the_outbox_backlog_is_counted_in_the_unfinished_jobs_index(
    database: Database, jobs: list[Job]
) -> None:
    backlog, plan = _read_plan(database, lambda r: r.outbox_backlog())
    assert backlog == 3  # queued, never published: i = 3, 13, 23
    assert (
        "SEARCH jobs USING COVERING INDEX idx_jobs_unfinished (status=? AND published_at=?)" in plan
    ), plan


def test_a_prune_batch_reads_the_finished_jobs_index(database: Database, jobs: list[Job]) -> None:
    def prune(session: Session) -> int:
        return JobRepository(session).prune_finished(before=utcnow() - timedelta(days=5), limit=4)

    with _recording(database.engine) as seen:
        deleted = write_transaction(database, prune)
    [statement] = seen
    plan = _plan(database, statement)
    assert deleted == 4
    assert (
        "SEARCH jobs USING COVERING INDEX idx_jobs_finished (status=? AND finished_at<?)" in plan
    ), plan
    assert "TEMP B-TREE" not in plan, plan
    assert "SCAN jobs" not in plan, plan


def test_api_reads_and_scrapes_never_scan_the_ledger(
    migrated: Settings, db_path: Path, redis_url: str
) -> None:
    settings = api_settings(db_path, redis_url)
    with ledger(settings) as db:
        for i in range(12):
            _add(db, status=("succeeded", "failed", "queued")[i % 3], published_at=None)
    with client_for(settings, headers=AUTH) as client, _recording(Engine) as seen:
        accepted = client.post("/v1/jobs/canary", json={}).json()["id"]
        paths = [f"/v1/jobs/{accepted}", "/metrics/ledger", "/metrics"]
        for query in ("", "&status=failed", "&kind=canary", "&kind=canary&status=queued"):
            page = client.get(f"/v1/jobs?limit=2{query}").json()
            assert page["next_cursor"], query
            paths.append(f"/v1/jobs?limit=2{query}&cursor={page['next_cursor']}")
        for path in paths:
            assert client.get(path).status_code == 200, path
    reads = [s for s in seen if s[0].lstrip().startswith("SELECT")]
    assert len(reads) >= 11  # the GETs and scrapes above, each at least one SELECT
    with ledger(settings) as db:
        plans = [(sql, _plan(db, (sql, parameters))) for sql, parameters in reads]
    # Walking an index in its order is fine when nothing is filtered out (the newest
    # page): it stops at the LIMIT. Filtered, it may walk the whole ledger first.
    scans = [
        (sql, plan)
        for sql, plan in plans
        if "SCAN jobs" in plan and ("WHERE" in sql or "TEMP B-TREE" in plan)
    ]
    assert not scans, scans
