"""Replica syncs against a real primary (Turso's sync server) and servers that fail.

Jobs run through the real ledger task (claim, run, record) without a worker; the sync
itself runs in its child process, as in a worker. Routing is checked on the real Redis
queue ``replicas.<host>``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import turso.sync
from celery import Celery

from core.settings import ReplicaConfig, Settings
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from jobs.ledger_task import LedgerTask
from jobs.outbox import enqueue
from jobs.runtime import Runtime
from tasks.replica_sync.errors import PrimaryMissing, SyncRefused, SyncTimedOut, SyncUnavailable
from tasks.replica_sync.job import run_replica_sync_job
from tasks.replica_sync.repository import ReplicaSyncRecord, ReplicaSyncRepository
from tasks.replica_sync.status import replica_statuses
from tasks.replica_sync.sync import replica_lock, sync_replica
from tests.conftest import make_settings
from tests.support.api import llen
from tests.support.polling import poll, wait_until
from tests.support.turso_server import TursoPrimary
from workers.app import create_celery

pytestmark = pytest.mark.integration

HOST = "edge-host-a"
TOKEN = "replica-token-SECRET-9f2c"


def _replica(path: Path, url: str, protocol: str = "turso-sync", **extra: Any) -> dict[str, Any]:
    return {
        "name": "edge-1",
        "path": str(path),
        "sync_url": url,
        "auth_token": TOKEN,
        "protocol": protocol,
        "interval_s": 5,
        **extra,
    }


def _app(db_path: Path, redis_url: str, replicas: list[dict[str, Any]], **more: Any) -> Celery:
    settings = make_settings(
        db_path,
        redis_url=redis_url,
        replicas=[ReplicaConfig.model_validate(r) for r in replicas],
        replica_host=HOST,
        job_retry_backoff_s=0.1,
        **more,
    )
    app = create_celery(settings)
    app.autoforge_runtime.leases.worker_id = "replica-test@host:1"
    return app


@pytest.fixture
def make_app(migrated: Settings, db_path: Path, redis_url: str) -> Iterator[Any]:
    apps: list[Celery] = []

    def build(replicas: list[dict[str, Any]], **more: Any) -> Celery:
        app = _app(db_path, redis_url, replicas, **more)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.autoforge_runtime.db.dispose()
        app.close()


def _run(app: Celery, job_id: str) -> Any:
    task: LedgerTask = app.tasks["autoforge.replica_sync"]
    return task.run_job(job_id, run_replica_sync_job)


def _job(runtime: Runtime, job_id: str) -> Job:
    with runtime.db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


def _syncs(runtime: Runtime) -> list[ReplicaSyncRecord]:
    with runtime.db.read_session() as session:
        return ReplicaSyncRepository(session).all("edge-1")


def _read_replica(path: Path) -> list[str]:
    """The replica's rows, read the way a reader of a turso-sync replica does (offline)."""
    return [row[0] for row in _query(path, "SELECT body FROM notes ORDER BY id")]


def _integrity(path: Path) -> list[Any]:
    return _query(path, "PRAGMA integrity_check")


def _query(path: Path, sql: str) -> list[Any]:
    connection = turso.sync.connect(str(path), "http://127.0.0.1:9")
    try:
        return list(connection.execute(sql).fetchall())
    finally:
        connection.close()
        # pyturso releases the file's lock only when the connection object is freed, not
        # at close(): until then no other process (the sync) can open the file.
        del connection
        gc.collect()


def test_rows_written_on_the_primary_reach_the_replica_through_a_sync_job(
    make_app: Any, turso_primary: TursoPrimary, tmp_path: Path, redis_url: str
) -> None:
    replica_path = tmp_path / "replicas" / "edge-1.db"
    app = make_app([_replica(replica_path, turso_primary.url)])
    runtime: Runtime = app.autoforge_runtime

    first = enqueue(runtime, "replica-sync", {"replica": "edge-1"})
    # Routed to the queue of the host that holds the file.
    assert llen(redis_url, f"replicas.{HOST}") == 1
    assert _run(app, first.job.id)["succeeded"]
    assert _read_replica(replica_path) == ["first"]

    turso_primary.execute("INSERT INTO notes (body) VALUES ('second'), ('third')")
    second = enqueue(runtime, "replica-sync", {"replica": "edge-1"})
    assert _run(app, second.job.id)["succeeded"]

    assert _read_replica(replica_path) == ["first", "second", "third"]
    ended = _job(runtime, second.job.id)
    assert ended.status is JobStatus.SUCCEEDED
    assert ended.result is not None
    result = ended.result["replicas"][0]
    assert (result["replica"], result["status"], result["changed"]) == ("edge-1", "succeeded", True)
    syncs = _syncs(runtime)
    assert [s.status for s in syncs] == ["succeeded", "succeeded"]
    assert syncs[0].lag_s is None  # nothing before the first sync
    assert syncs[1].lag_s is not None
    assert syncs[1].lag_s >= 0
    assert syncs[1].job_id == second.job.id
    with runtime.db.read_session() as session:
        (status,) = replica_statuses(session, runtime.settings)
    assert status.last_success_at is not None
    assert status.lag_s is not None
    assert status.syncs == {"succeeded": 2, "skipped": 0, "failed": 0}
    assert status.last_error is None
    assert not status.stale


def test_a_second_sync_of_the_same_replica_at_once_is_skipped_and_counted(
    make_app: Any, turso_primary: TursoPrimary, tmp_path: Path
) -> None:
    replica_path = tmp_path / "edge-1.db"
    app = make_app([_replica(replica_path, turso_primary.url)])
    runtime: Runtime = app.autoforge_runtime
    config = runtime.settings.replicas[0]
    # The first sync holds the replica's lock (as a sync in another worker would) ...
    with replica_lock(config) as held:
        assert held
        job = enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job
        # ... so the second one finds it held: skipped at once, not queued or retried.
        assert _run(app, job.id)["succeeded"]
    ended = _job(runtime, job.id)
    assert ended.result is not None
    assert ended.result["replicas"][0]["status"] == "skipped"
    assert ended.attempts == 1
    assert [s.status for s in _syncs(runtime)] == ["skipped"]

    assert not replica_path.exists()  # the skipped sync did not touch the replica


def test_two_real_syncs_at_once_one_runs_and_the_other_is_skipped(
    make_app: Any, stub_server: Any, tmp_path: Path
) -> None:
    # The first sync is slow (its primary never answers, so it runs until its deadline);
    # the second starts meanwhile.
    slow = stub_server("hang")
    app = make_app([_replica(tmp_path / "edge-1.db", slow.url)], replica_sync_timeout_s=3)
    runtime: Runtime = app.autoforge_runtime
    config = runtime.settings.replicas[0]
    first_error: list[Exception] = []

    def first() -> None:
        try:
            sync_replica(config, timeout_s=3)
        except SyncTimedOut as exc:
            first_error.append(exc)

    running = threading.Thread(target=first)
    running.start()
    wait_until(lambda: not _lock_is_free(config), timeout=5, what="the first sync takes the lock")

    job = enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job
    assert _run(app, job.id)["succeeded"]
    running.join()

    ended = _job(runtime, job.id)
    assert ended.result is not None
    assert ended.result["replicas"][0]["status"] == "skipped"
    assert ended.attempts == 1  # not retried, not queued behind the first
    assert len(first_error) == 1  # the first one ran (to its deadline)
    assert _lock_is_free(config)


def test_all_syncs_every_replica_of_this_host(
    make_app: Any, turso_primary: TursoPrimary, tmp_path: Path
) -> None:
    replicas = [
        {**_replica(tmp_path / "a.db", turso_primary.url), "name": "a"},
        {**_replica(tmp_path / "b.db", turso_primary.url), "name": "b"},
        {**_replica(tmp_path / "c.db", turso_primary.url), "name": "c", "host": "elsewhere"},
    ]
    app = make_app(replicas)
    runtime: Runtime = app.autoforge_runtime

    job = enqueue(runtime, "replica-sync", {"all": True}).job
    assert _run(app, job.id)["succeeded"]

    ended = _job(runtime, job.id)
    assert ended.result is not None
    assert [r["replica"] for r in ended.result["replicas"]] == ["a", "b"]
    assert _read_replica(tmp_path / "a.db") == _read_replica(tmp_path / "b.db") == ["first"]
    assert not (tmp_path / "c.db").exists()


def test_primary_down_retries_then_fails_clearly_and_the_replica_stays_readable(
    make_app: Any, turso_primary: TursoPrimary, tmp_path: Path
) -> None:
    replica_path = tmp_path / "edge-1.db"
    app = make_app(
        [_replica(replica_path, turso_primary.url)], job_max_attempts={"replica-sync": 3}
    )
    runtime: Runtime = app.autoforge_runtime
    assert _run(app, enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job.id)["succeeded"]
    turso_primary.stop()

    job = enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job
    for attempt in (1, 2):
        # Called directly (not in a worker), Celery's retry raises the job's error.
        with pytest.raises(SyncUnavailable):
            _run(app, job.id)
        waiting = _job(runtime, job.id)
        assert (waiting.status, waiting.attempts) == (JobStatus.QUEUED, attempt)
        # Meanwhile the replica answers reads with what it has.
        assert _read_replica(replica_path) == ["first"]
        time.sleep(0.5)  # the retry's backoff (JOB_RETRY_BACKOFF_S=0.1, jittered)
    assert _run(app, job.id) == {"failed": True}  # the last attempt

    ended = _job(runtime, job.id)
    assert (ended.status, ended.attempts) == (JobStatus.FAILED, 3)
    assert ended.error is not None
    assert ended.error.kind == "SyncUnavailable"
    assert "replica 'edge-1'" in ended.error.message
    assert "Connection refused" in ended.error.message
    assert TOKEN not in json.dumps(ended.error.message)
    assert [s.status for s in _syncs(runtime)] == ["succeeded", "failed", "failed", "failed"]
    with runtime.db.read_session() as session:
        (status,) = replica_statuses(session, runtime.settings)
    assert status.last_error is not None
    assert "Connection refused" in status.last_error
    assert _read_replica(replica_path) == ["first"]

    # The primary is back: the next sync succeeds.
    turso_primary.start()
    turso_primary.execute("INSERT INTO notes (body) VALUES ('after')")
    assert _run(app, enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job.id)["succeeded"]
    assert _read_replica(replica_path) == ["first", "after"]


ROWS_TO_PULL = 1000


@pytest.mark.parametrize("stage", ["bootstrap", "pull"])
def test_a_sync_killed_mid_way_leaves_a_valid_replica_and_the_next_sync_succeeds(
    turso_primary: TursoPrimary, tmp_path: Path, stage: str
) -> None:
    replica_path = tmp_path / "edge-1.db"
    config = ReplicaConfig.model_validate(_replica(replica_path, turso_primary.url))
    if stage == "pull":
        sync_replica(config, timeout_s=30)
    # About 4 MB to transfer: the sync is still writing when the kill lands (the watcher
    # below kills it within a millisecond of its first write).
    filler = "x" * 4000
    for _ in range(ROWS_TO_PULL // 100):
        turso_primary.execute(
            *[f"INSERT INTO notes (body) VALUES ('{filler}')" for _ in range(100)]
        )
    before = _size_of_files(replica_path)
    killed: list[int] = []

    def kill_once_writing(pid: int) -> None:
        def watch() -> None:
            # Every millisecond, not backing off: the kill must land while it writes.
            if poll(lambda: _size_of_files(replica_path) != before, timeout=20, interval=0.001):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        threading.Thread(target=watch, daemon=True).start()

    with pytest.raises(SyncUnavailable, match="the sync process was killed"):
        sync_replica(config, timeout_s=30, on_child=kill_once_writing)
    assert killed
    assert _lock_is_free(config)  # the kernel dropped the dead sync's lock

    if stage == "pull":
        # The file is valid and still answers with what it had.
        assert _integrity(replica_path) == [("ok",)]
        assert _read_replica(replica_path)[0] == "first"
    report = sync_replica(config, timeout_s=30)
    assert not report.skipped
    assert report.changed or stage == "pull"
    assert len(_read_replica(replica_path)) == 1 + ROWS_TO_PULL
    assert _integrity(replica_path) == [("ok",)]


def _size_of_files(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.glob(path.name + "*") if f.is_file())


def _lock_is_free(config: ReplicaConfig) -> bool:
    with replica_lock(config) as held:
        return held


@pytest.mark.parametrize("protocol", ["libsql", "turso-sync"])
@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("401", SyncRefused),
        ("403", SyncRefused),
        ("404", PrimaryMissing),
        ("503", SyncUnavailable),
        ("500", SyncUnavailable),
    ],
)
def test_a_failing_primary_is_classified_and_the_token_never_shows(
    stub_server: Any, tmp_path: Path, protocol: str, mode: str, error: type[Exception]
) -> None:
    server = stub_server(mode)
    config = ReplicaConfig.model_validate(_replica(tmp_path / "r.db", server.url, protocol))
    with pytest.raises(error) as raised:
        sync_replica(config, timeout_s=20)
    assert "replica 'edge-1'" in str(raised.value)
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("protocol", ["libsql", "turso-sync"])
def test_a_refusing_primary_is_transient(tmp_path: Path, protocol: str) -> None:
    port = _closed_port()
    config = ReplicaConfig.model_validate(
        _replica(tmp_path / "r.db", f"http://127.0.0.1:{port}", protocol)
    )
    with pytest.raises(SyncUnavailable, match=r"(?i)refused"):
        sync_replica(config, timeout_s=20)


@pytest.mark.parametrize("protocol", ["libsql", "turso-sync"])
def test_a_primary_that_never_answers_is_cut_off_at_the_deadline(
    stub_server: Any, tmp_path: Path, protocol: str
) -> None:
    server = stub_server("hang")
    config = ReplicaConfig.model_validate(_replica(tmp_path / "r.db", server.url, protocol))
    with pytest.raises(SyncTimedOut, match=r"within 1\.5 s"):
        sync_replica(config, timeout_s=1.5)
    assert _lock_is_free(config)


def _closed_port() -> int:
    from tests.support.turso_server import free_port

    return free_port()


def test_libsql_replica_against_a_real_server(tmp_path: Path) -> None:
    """Runs only with AUTOFORGE_TEST_SQLD_URL (and AUTOFORGE_TEST_SQLD_TOKEN if it needs one):
    no sqld or Turso Cloud database can run where these tests are developed."""
    url = os.environ.get("AUTOFORGE_TEST_SQLD_URL")
    if not url:
        pytest.skip(
            "no libSQL server to sync from: set AUTOFORGE_TEST_SQLD_URL (an sqld or Turso "
            "database URL) to run this test (the only test skipped when CI is set)"
        )
    token = os.environ.get("AUTOFORGE_TEST_SQLD_TOKEN")
    config = ReplicaConfig.model_validate(
        {
            "name": "sqld",
            "path": str(tmp_path / "sqld-replica.db"),
            "sync_url": url,
            "auth_token": token,
            "protocol": "libsql",
        }
    )
    first = sync_replica(config, timeout_s=60)
    second = sync_replica(config, timeout_s=60)
    assert not first.skipped
    assert not second.skipped


def test_history_older_than_the_retention_is_trimmed_but_not_the_newest_success(
    make_app: Any, turso_primary: TursoPrimary, tmp_path: Path
) -> None:
    app = make_app([_replica(tmp_path / "edge-1.db", turso_primary.url)])
    runtime: Runtime = app.autoforge_runtime
    old = datetime.now(UTC) - timedelta(days=runtime.settings.ledger_retention_days + 1)

    def add(status: str, days_older: float) -> None:
        record = ReplicaSyncRecord(
            replica="edge-1",
            host=HOST,
            job_id=None,
            status=status,
            started_at=old - timedelta(days=days_older),
            duration_s=0.1,
        )
        write_transaction(runtime.db, lambda s: ReplicaSyncRepository(s).add(record))

    add("failed", 2)
    add("succeeded", 1)
    with runtime.db.read_session() as session:
        repository = ReplicaSyncRepository(session)
        # The newest success survives any trim (lag is measured from it)...
        assert repository.prune("edge-1", before=datetime.now(UTC)) == 1
        session.rollback()
    add("skipped", 0)

    # ...and a sync trims its replica's rows past the retention as it records itself.
    assert _run(app, enqueue(runtime, "replica-sync", {"replica": "edge-1"}).job.id)["succeeded"]
    assert [s.status for s in _syncs(runtime)] == ["succeeded"]


def test_a_password_in_the_sync_url_never_shows_either(stub_server: Any, tmp_path: Path) -> None:
    server = stub_server("401")
    url = server.url.replace("http://", "http://user:url-password-SECRET-3e@")
    config = ReplicaConfig.model_validate(_replica(tmp_path / "r.db", url, "libsql"))

    with pytest.raises(SyncRefused) as raised:
        sync_replica(config, timeout_s=20)

    assert "url-password-SECRET-3e" not in str(raised.value)
    assert TOKEN not in str(raised.value)
