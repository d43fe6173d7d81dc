"""The backup job end to end: a real worker on ``maintenance`` takes backups and runs drills.

Jobs are enqueued over the API (in the test process) or by the scheduled-enqueue task
that beat fires, sent to the worker exactly as beat sends it. Backups land in a local
folder (``BACKUP_DIR``) that the test can reach into, e.g. to change one byte of a stored
backup; outcomes are read from the ledger, the catalogue and the metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from db.repositories.jobs import JobRepository
from domain.jobs import Job, JobStatus
from jobs.outbox import enqueue
from jobs.queues import ENQUEUE_SCHEDULED_TASK, MAINTENANCE_QUEUE
from tasks.backup.service import list_backups, restore_backup
from tests.support.backups import (
    KEY_A,
    Writer,
    assert_key_absent,
    execute,
    flip_one_byte,
    parse_metrics,
    query,
    sample,
)
from tests.support.processes import Pipeline, open_pipeline
from workers.beat import beat_schedule

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

JOB_TIMEOUT_S = 40.0
LAST_SUCCESS = "autoforge_backup_last_success_timestamp_seconds"


def _accept(client: TestClient, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs/backup", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert isinstance(job_id, str)
    return job_id


def _catalogue(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/backups")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert isinstance(items, list)
    return items


def _backup_jobs(pipeline: Pipeline) -> list[Job]:
    with pipeline.runtime.db.read_session() as session:
        return JobRepository(session).list_recent(kind="backup", limit=100)


def test_backups_and_drills_run_on_a_worker_and_a_tampered_backup_fails_the_drill(
    tmp_path: Path, redis_url: str
) -> None:
    backup_dir = tmp_path / "backups"
    with open_pipeline(
        tmp_path, redis_url, backup_dir=backup_dir, backup_encryption_key=KEY_A
    ) as pipeline:
        pipeline.start_worker([MAINTENANCE_QUEUE], concurrency=1)
        with pipeline.api_client() as client:
            # A backup, with retention applied (nothing to prune yet).
            first_id = _accept(client, {"prune": True})
            first = pipeline.wait_for_job(first_id, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
            assert first.result is not None
            assert (first.attempts, first.progress, first.error) == (1, 1.0, None)
            assert first.result["mode"] == "backup"
            assert first.result["encrypted"] is True
            assert (first.result["pruned"], first.result["kept"]) == ([], 1)
            catalogue = _catalogue(client)
            assert [item["id"] for item in catalogue] == [first.result["backup_id"]]
            stored = Path(catalogue[0]["location"])
            assert stored.parent == backup_dir.resolve()
            assert stored.is_file()
            assert stored.name == f"{first.result['backup_id']}.db.zst.enc"
            assert catalogue[0]["stored_sha256"] == first.result["stored_sha256"]
            assert catalogue[0]["table_counts"] == first.result["table_counts"]

            # A second one without retention: both stay in the catalogue, newest first.
            second_id = _accept(client, {"mode": "backup", "prune": False})
            second = pipeline.wait_for_job(second_id, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
            assert second.result is not None
            assert "pruned" not in second.result
            newest = second.result["backup_id"]
            catalogue = _catalogue(client)
            assert [item["id"] for item in catalogue] == [newest, first.result["backup_id"]]

            # A drill restores the newest backup and finds it as its manifest says.
            drill_id = _accept(client, {"mode": "drill"})
            drill = pipeline.wait_for_job(drill_id, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
            assert drill.result is not None
            assert drill.result["mode"] == "drill"
            assert (drill.result["ok"], drill.result["problems"]) == (True, [])
            assert drill.result["backup_id"] == newest
            assert drill.result["table_counts"] == catalogue[0]["table_counts"]

            # One byte of the newest backup changes in storage: the next drill fails the job.
            flip_one_byte(Path(catalogue[0]["location"]))
            failed_id = _accept(client, {"mode": "drill"})
            failed = pipeline.wait_for_job(failed_id, JobStatus.FAILED, timeout=JOB_TIMEOUT_S)
            assert failed.error is not None
            assert failed.error.kind == "DrillFailed"
            assert f"restore drill of {newest} failed" in failed.error.message
            assert "altered or damaged in storage" in failed.error.message
            assert failed.attempts == 1  # permanent: not retried
            assert failed.result is None

            catalogue = _catalogue(client)
            assert catalogue[0]["id"] == newest
            assert catalogue[0]["verified_at"] is None
            assert "altered or damaged" in catalogue[0]["verification_error"]
            assert catalogue[1]["verified_at"] is not None

            metrics_text = client.get("/metrics/ledger").text
            samples = parse_metrics(metrics_text)
            assert sample(samples, "autoforge_backup_jobs", mode="drill", status="failed") == 1
            assert sample(samples, "autoforge_backup_jobs", mode="drill", status="succeeded") == 1
            assert sample(samples, "autoforge_backup_jobs", mode="backup", status="succeeded") == 2
            assert second.finished_at is not None
            assert drill.finished_at is not None
            assert sample(samples, LAST_SUCCESS, mode="backup") == pytest.approx(
                second.finished_at.timestamp(), abs=0.01
            )
            assert sample(samples, LAST_SUCCESS, mode="drill") == pytest.approx(
                drill.finished_at.timestamp(), abs=0.01
            )
            responses = [client.get(f"/v1/jobs/{i}").text for i in (first_id, failed_id)]
            responses += [client.get("/v1/jobs").text, client.get("/v1/backups").text]

        # The key is in no job row, API answer, manifest or worker log line.
        rows = [repr(job) for job in _backup_jobs(pipeline)]
        manifests = [p.read_text() for p in backup_dir.glob("*.manifest.json")]
        logs = [process.log_text() for process in pipeline.processes]
        assert "DrillFailed" in logs[0]
        assert_key_absent(KEY_A, *rows, *responses, metrics_text, *manifests, *logs)


def test_scheduled_fires_make_one_job_per_period(tmp_path: Path, redis_url: str) -> None:
    # Periods are named after the fire time: schedules whose latest fires were an hour
    # and two days ago name the same periods wherever in the day this runs.
    now = datetime.now(UTC)
    nightly_fire = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    weekly_fire = (now - timedelta(days=2)).replace(second=0, microsecond=0)
    backup_cron = f"{nightly_fire.minute} {nightly_fire.hour} * * *"
    drill_cron = f"{weekly_fire.minute} {weekly_fire.hour} * * {weekly_fire.isoweekday() % 7}"
    with open_pipeline(
        tmp_path,
        redis_url,
        backup_dir=tmp_path / "backups",
        backup_cron=backup_cron,
        restore_drill_cron=drill_cron,
    ) as pipeline:
        schedule = beat_schedule(pipeline.settings, pipeline.runtime.kinds)
        nightly, weekly = schedule["nightly-backup"], schedule["restore-drill"]
        assert nightly["task"] == weekly["task"] == ENQUEUE_SCHEDULED_TASK
        assert nightly["args"] == (
            "backup",
            {"mode": "backup", "prune": True},
            "%Y-%m-%d",
            backup_cron,
        )
        assert weekly["args"] == ("backup", {"mode": "drill", "prune": True}, "%G-W%V", drill_cron)
        pipeline.start_worker([MAINTENANCE_QUEUE], concurrency=2)

        def fire_twice(args: tuple[Any, ...]) -> list[dict[str, Any]]:
            # Sent together, so the two enqueue tasks race on the two pool processes.
            sent = [
                pipeline.app.send_task(ENQUEUE_SCHEDULED_TASK, args=args, queue=MAINTENANCE_QUEUE)
                for _ in range(2)
            ]
            outcomes = [result.get(timeout=JOB_TIMEOUT_S) for result in sent]
            for result in sent:
                result.forget()
            return outcomes

        # The weekly drill, before any backup exists: one job, failed (nothing to drill).
        drills = fire_twice(weekly["args"])
        assert drills[0]["job_id"] == drills[1]["job_id"]
        assert sorted(o["created"] for o in drills) == [False, True]
        drill = pipeline.wait_for_job(drills[0]["job_id"], JobStatus.FAILED, timeout=JOB_TIMEOUT_S)
        assert drill.error is not None
        assert drill.error.kind == "BackupNotFound"
        assert drill.arguments == {"mode": "drill", "prune": True}
        year, week, _ = weekly_fire.isocalendar()
        assert (
            drill.idempotency_key == drills[0]["key"] == f"schedule:backup:drill:{year}-W{week:02d}"
        )

        # The nightly backup: one job for today, and it succeeds.
        nightlies = fire_twice(nightly["args"])
        assert nightlies[0]["job_id"] == nightlies[1]["job_id"]
        assert sorted(o["created"] for o in nightlies) == [False, True]
        job = pipeline.wait_for_job(
            nightlies[0]["job_id"], JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S
        )
        day = nightly_fire.strftime("%Y-%m-%d")
        assert job.idempotency_key == nightlies[0]["key"] == f"schedule:backup:backup:{day}"
        assert job.arguments == {"mode": "backup", "prune": True}
        assert job.result is not None
        assert [m.id for m in list_backups(pipeline.settings)] == [job.result["backup_id"]]

        # The same period fires again: still one backup job and one drill job in the ledger.
        again = fire_twice(nightly["args"])
        assert {o["job_id"] for o in again} == {job.id}
        assert [o["created"] for o in again] == [False, False]
        jobs = _backup_jobs(pipeline)
        assert sorted((j.arguments["mode"], j.status) for j in jobs) == [
            ("backup", JobStatus.SUCCEEDED),
            ("drill", JobStatus.FAILED),
        ]
        assert pipeline.queue_length(MAINTENANCE_QUEUE) == 0


@pytest.fixture
def busy_pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    """A pipeline whose database has ~4 MB of filler, copied 4 pages per backup step."""
    with open_pipeline(
        tmp_path,
        redis_url,
        backup_dir=tmp_path / "backups",
        backup_step_pages=4,
        backup_step_pause_ms=5,
    ) as pipeline:
        execute(
            pipeline.db_path,
            "CREATE TABLE pair_a (id INTEGER PRIMARY KEY)",
            "CREATE TABLE pair_b (id INTEGER PRIMARY KEY)",
            "CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
            "INSERT INTO filler (data) SELECT randomblob(4000) FROM n",
        )
        yield pipeline


def test_writers_keep_committing_while_a_backup_job_runs(
    busy_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = busy_pipeline
    pipeline.start_worker([MAINTENANCE_QUEUE, "canary"], concurrency=2)
    writer = Writer(pipeline.db_path)  # returns once it has committed 20 transactions
    try:
        accepted = enqueue(pipeline.runtime, "backup", {"mode": "backup", "prune": False})
        # The worker's own ledger writes go on as well: canaries on the other pool process.
        canaries = [enqueue(pipeline.runtime, "canary", {"sleep_ms": 20}).job.id for _ in range(8)]
        job = pipeline.wait_for_job(accepted.job.id, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
        for canary in canaries:
            pipeline.wait_for_job(canary, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
    finally:
        commits = writer.stop()

    assert job.attempts == 1
    assert job.result is not None
    counts = job.result["table_counts"]
    # The backup is one instant: both tables of every committed transaction, or neither.
    assert counts["pair_a"] == counts["pair_b"]
    snapshot_rows = counts["pair_a"]
    assert snapshot_rows >= 20
    assert counts["filler"] == 1000
    # The writer committed while the job ran, also after the snapshot's instant: not blocked.
    during = [c for c in commits if c.status_before == c.status_after == "running"]
    assert during, "no commit happened while the backup job was running"
    assert [c for c in during if c.row_id > snapshot_rows]
    committed = query(pipeline.db_path, "SELECT count(*) FROM pair_a")[0][0]
    assert committed == len(commits) > snapshot_rows

    # Restored, the backup holds exactly the rows of its instant, 1..n in both tables.
    restored = tmp_path / "restored.db"
    report = restore_backup(pipeline.settings, job.result["backup_id"], to=restored)
    assert report.database.ok
    expected = [(i,) for i in range(1, snapshot_rows + 1)]
    assert query(restored, "SELECT id FROM pair_a ORDER BY id") == expected
    assert query(restored, "SELECT id FROM pair_b ORDER BY id") == expected


def _read_in_a_fresh_process(db_path: Path, sql: str) -> list[list[Any]]:
    """Rows as a process that never touched the file before sees them."""
    program = (
        "import json, sys, libsql\n"
        "connection = libsql.connect(sys.argv[1])\n"
        "print(json.dumps([list(row) for row in connection.execute(sys.argv[2]).fetchall()]))\n"
        "connection.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(db_path), sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    return rows


def test_commits_of_the_worker_process_after_a_backup_reach_every_other_process(
    tmp_path: Path, redis_url: str
) -> None:
    """SQLite's POSIX locks belong to the process: a second SQLite library opening and
    closing the live file inside the worker would drop the locks of the worker's libSQL
    connections, and a later open-and-close elsewhere would then checkpoint and delete
    the WAL under them. The worker's next commits would be seen by nobody else."""
    with open_pipeline(tmp_path, redis_url, backup_dir=tmp_path / "backups") as pipeline:
        # One pool process: the backup and every later job run in the same process.
        worker = pipeline.start_worker([MAINTENANCE_QUEUE, "canary"], concurrency=1)
        pool = worker.pool_processes()
        backup = enqueue(pipeline.runtime, "backup", {"mode": "backup"}).job.id
        pipeline.wait_for_job(backup, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)
        first = enqueue(pipeline.runtime, "canary", {}).job.id
        pipeline.wait_for_job(first, JobStatus.SUCCEEDED, timeout=JOB_TIMEOUT_S)

        # Nobody but the worker holds the file open; another process opens and closes it.
        pipeline.runtime.db.dispose()
        assert _read_in_a_fresh_process(pipeline.db_path, "SELECT count(*) FROM jobs") == [[2]]

        second = enqueue(pipeline.runtime, "canary", {}).job.id
        pipeline.runtime.db.dispose()
        outcomes = pipeline.wait_for_task_outcomes(second, 1, timeout=JOB_TIMEOUT_S)
        assert worker.pool_processes() == pool  # the very process that ran the backup
        assert outcomes == [{"succeeded": True, "attempt": 1}]

        statuses = _read_in_a_fresh_process(
            pipeline.db_path, "SELECT id, status FROM jobs ORDER BY created_at"
        )
        assert statuses == [[backup, "succeeded"], [first, "succeeded"], [second, "succeeded"]]
        effects = _read_in_a_fresh_process(
            pipeline.db_path, "SELECT job_id FROM canary_effects ORDER BY job_id"
        )
        assert effects == sorted([[first], [second]])


def test_a_worker_removes_scratch_folders_of_killed_backups_when_it_starts(
    tmp_path: Path, redis_url: str
) -> None:
    with open_pipeline(tmp_path, redis_url, data_dir=tmp_path / "data") as pipeline:
        scratch = tmp_path / "data" / "tmp"
        stale = scratch / "backup-killed"
        stale.mkdir(parents=True)
        (stale / "snapshot.db").write_bytes(bytes(1 << 20))
        an_hour_ago = time.time() - 3600
        os.utime(stale, (an_hour_ago, an_hour_ago))
        unrelated = scratch / "something-else"
        unrelated.mkdir()

        pipeline.start_worker([MAINTENANCE_QUEUE], concurrency=1)

        assert not stale.exists()
        assert unrelated.exists()
