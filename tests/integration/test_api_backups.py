"""``POST /v1/jobs/backup``, ``GET /v1/backups`` and the backup metrics, without a worker.

The API runs in the test process on a migrated libSQL file and the session's real Redis.
Backups in the catalogue are made directly with :func:`tasks.backup.service.create_backup`
(the same function the job runs); job outcomes for the metrics are arranged in the ledger
through :class:`~db.repositories.jobs.JobRepository`, as a worker would record them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings
from db.database import Database
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobStatus
from jobs.queues import broker_lists
from tasks.backup.manifest import BackupManifest
from tasks.backup.service import create_backup
from tasks.registry import kind_registry
from tests.support.api import (
    AUTH,
    TestClient,
    api_settings,
    client_for,
    ledger,
    llen,
)
from tests.support.backups import KEY_A, assert_key_absent, parse_metrics, sample

pytestmark = pytest.mark.integration

CATALOGUE_FIELDS = {
    "id",
    "created_at",
    "source",
    "method",
    "schema_revision",
    "table_counts",
    "raw_size_bytes",
    "stored_size_bytes",
    "stored_sha256",
    "compression",
    "encrypted",
    "location",
    "verified_at",
    "verification_error",
}


def _settings(db_path: Path, redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backup_dir": tmp_path / "backups",
        "data_dir": tmp_path / "data",
        **overrides,
    }
    return api_settings(db_path, redis_url, **values)


@pytest.fixture
def app_settings(migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path) -> Settings:
    return _settings(db_path, redis_url, tmp_path)


def _backup(settings: Settings) -> BackupManifest:
    with ledger(settings) as db:
        return create_backup(settings, db)


def _queued_messages(redis_url: str, queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    raw: list[bytes] = []
    try:
        for name in broker_lists(queue):  # one list per message priority
            items = client.lrange(name, 0, -1)
            assert isinstance(items, list)
            raw.extend(items)
    finally:
        client.close()
    return [json.loads(item) for item in raw]


def _stored(settings: Settings, job_id: str) -> Job:
    with ledger(settings) as db, db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


class TestEnqueue:
    def test_a_backup_is_accepted_recorded_and_published_to_maintenance(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        response = client.post("/v1/jobs/backup", json={})

        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert (job["kind"], job["status"]) == ("backup", "queued")
        # Defaults are filled in before the job is recorded.
        assert job["arguments"] == {"mode": "backup", "prune": False}
        assert job["max_attempts"] == kind_registry().max_attempts(app_settings, "backup")
        stored = _stored(app_settings, job["id"])
        assert stored.kind == "backup"
        assert stored.published_at is not None
        # One message on the maintenance list, for the backup task, named after the job.
        messages = _queued_messages(redis_url, "maintenance")
        assert len(messages) == 1
        assert messages[0]["headers"]["task"] == "autoforge.backup"
        assert messages[0]["headers"]["id"] == job["id"]
        for queue in ("canary", "evaluations", "embeddings", "replicas"):
            assert llen(redis_url, queue) == 0

    def test_a_drill_is_accepted(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        response = client.post("/v1/jobs/backup", json={"mode": "drill"})

        assert response.status_code == 202, response.text
        assert response.json()["arguments"] == {"mode": "drill", "prune": False}
        assert _stored(app_settings, response.json()["id"]).arguments["mode"] == "drill"
        assert llen(redis_url, "maintenance") == 1

    def test_prune_can_be_turned_off(self, client: TestClient) -> None:
        response = client.post("/v1/jobs/backup", json={"mode": "backup", "prune": False})

        assert response.status_code == 202, response.text
        assert response.json()["arguments"] == {"mode": "backup", "prune": False}

    @pytest.mark.parametrize(
        ("body", "location"),
        [
            ({"mode": "nightly"}, ["body", "mode"]),
            ({"mode": "backup", "keep": 3}, ["body", "keep"]),
            ({"prune": "sometimes"}, ["body", "prune"]),
            ({"mode": None}, ["body", "mode"]),
        ],
        ids=["unknown-mode", "extra-field", "prune-not-a-bool", "mode-null"],
    )
    def test_invalid_bodies_are_422_and_enqueue_nothing(
        self,
        client: TestClient,
        app_settings: Settings,
        redis_url: str,
        body: dict[str, Any],
        location: list[str],
    ) -> None:
        response = client.post("/v1/jobs/backup", json=body)

        assert response.status_code == 422, response.text
        text = response.text
        assert json.dumps(location[-1]) in text, text
        with ledger(app_settings) as db, db.read_session() as session:
            assert JobRepository(session).list_recent(limit=10) == []
        assert llen(redis_url, "maintenance") == 0

    def test_an_idempotent_replay_returns_the_same_job(
        self, client: TestClient, redis_url: str
    ) -> None:
        headers = {"Idempotency-Key": "before-migration-42"}
        first = client.post("/v1/jobs/backup", json={"mode": "backup"}, headers=headers)
        replay = client.post("/v1/jobs/backup", json={}, headers=headers)
        conflict = client.post("/v1/jobs/backup", json={"mode": "drill"}, headers=headers)

        assert (first.status_code, replay.status_code) == (202, 200)
        assert replay.json()["id"] == first.json()["id"]
        assert conflict.status_code == 409
        assert llen(redis_url, "maintenance") == 1

    def test_enqueue_needs_an_api_key(self, app_settings: Settings, redis_url: str) -> None:
        with client_for(app_settings) as anonymous:
            response = anonymous.post("/v1/jobs/backup", json={})
            listing = anonymous.get("/v1/backups")

        assert response.status_code == 401
        assert listing.status_code == 401
        assert llen(redis_url, "maintenance") == 0


class TestCatalogue:
    def test_empty_when_nothing_was_backed_up(self, client: TestClient) -> None:
        response = client.get("/v1/backups")

        assert response.status_code == 200
        assert response.json() == {"items": []}

    def test_lists_stored_backups_newest_first(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        older = _backup(app_settings)
        newer = _backup(app_settings)

        response = client.get("/v1/backups")

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [item["id"] for item in items] == [newer.id, older.id]
        for item, manifest in zip(items, (newer, older), strict=True):
            assert set(item) == CATALOGUE_FIELDS
            assert datetime.fromisoformat(item["created_at"]) == manifest.created_at
            assert item["stored_sha256"] == manifest.stored_sha256
            assert item["stored_size_bytes"] == manifest.stored_size_bytes
            assert item["schema_revision"] == manifest.schema_revision is not None
            assert item["table_counts"] == manifest.table_counts
            assert "jobs" in item["table_counts"]
            assert item["location"] == str(app_settings.backup_dir / manifest.stored.key)
            assert Path(item["location"]).is_file()
            assert item["verified_at"] is not None
            assert datetime.fromisoformat(item["verified_at"]) == manifest.verified_at
            assert item["verification_error"] is None
            assert item["encrypted"] is False
            assert item["method"] == "snapshot"
            assert item["compression"] == app_settings.backup_compression

    def test_an_unreadable_manifest_does_not_hide_the_others(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        good = _backup(app_settings)
        damaged = "20200101T000000Z-abcdef.manifest.json"
        (app_settings.backup_dir / damaged).write_text('{"format": 1, "id": ')
        (app_settings.backup_dir / "notes.manifest.json").write_text("{}")

        response = client.get("/v1/backups")

        assert response.status_code == 200, response.text
        assert [item["id"] for item in response.json()["items"]] == [good.id]

    def test_encrypted_backups_say_so_and_the_key_never_shows(
        self, migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
    ) -> None:
        settings = _settings(db_path, redis_url, tmp_path, backup_encryption_key=KEY_A)
        manifest = _backup(settings)

        with client_for(settings, headers=AUTH) as client:
            responses = [
                client.get("/v1/backups"),
                client.post("/v1/jobs/backup", json={}),
                client.post("/v1/jobs/backup", json={"mode": "drill"}),
                client.get("/v1/jobs"),
                client.get("/metrics/ledger"),
                client.get("/readyz"),
                client.get("/openapi.json"),
            ]

        assert [r.status_code for r in responses] == [200, 202, 202, 200, 200, 200, 200]
        item = responses[0].json()["items"][0]
        assert item["id"] == manifest.id
        assert item["encrypted"] is True
        assert item["location"].endswith(".enc")
        assert_key_absent(KEY_A, *(r.text for r in responses), *map(str, responses[0].headers))
        # Nor is it in the stored manifest that the catalogue is read from.
        stored = (settings.backup_dir / manifest.manifest_key).read_text()
        assert_key_absent(KEY_A, stored)


def _add_job(db: Database, arguments: dict[str, Any]) -> Job:
    return write_transaction(
        db,
        lambda s: JobRepository(s).add(Job(kind="backup", arguments=arguments, max_attempts=3)),
    )


def _fail_job(db: Database, arguments: dict[str, Any], error: JobError) -> Job:
    job = _add_job(db, arguments)
    assert write_transaction(db, lambda s: JobRepository(s).fail(job.id, error))
    with db.read_session() as session:
        failed = JobRepository(session).get(job.id)
    assert failed is not None
    return failed


def _succeed_job(db: Database, arguments: dict[str, Any]) -> Job:
    job = _add_job(db, arguments)

    def run(session: Any) -> Job:
        jobs = JobRepository(session)
        claimed = jobs.claim(job.id, lease_s=30)
        assert claimed is not None
        assert jobs.succeed(job.id, attempt=claimed.attempts, result={"backup_id": "x"})
        done = jobs.get(job.id)
        assert done is not None
        return done

    return write_transaction(db, run)


class TestMetrics:
    def test_no_backup_series_without_backup_jobs(self, client: TestClient) -> None:
        samples = parse_metrics(client.get("/metrics/ledger").text)

        assert not [name for name, _ in samples if name.startswith("autoforge_backup")]

    def test_a_failed_drill_is_counted_by_mode_and_status(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        with ledger(app_settings) as db:
            _fail_job(db, {"mode": "drill"}, JobError("DrillFailed", "restore drill failed"))

        samples = parse_metrics(client.get("/metrics/ledger").text)

        assert sample(samples, "autoforge_backup_jobs", mode="drill", status="failed") == 1
        assert sample(samples, "autoforge_jobs", kind="backup", status="failed") == 1
        # A failed job is no success: no last-success time for drills.
        assert (
            sample(samples, "autoforge_backup_last_success_timestamp_seconds", mode="drill") is None
        )

    def test_the_last_success_of_each_mode_is_the_newest_finish(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        with ledger(app_settings) as db:
            _succeed_job(db, {"mode": "backup", "prune": True})
            newest = _succeed_job(db, {"mode": "backup", "prune": False})
            # Recorded before modes existed: counts as a backup.
            legacy = _succeed_job(db, {})
            drill = _succeed_job(db, {"mode": "drill", "prune": True})
            _fail_job(db, {"mode": "backup"}, JobError("SnapshotFailed", "disk full"))
            queued = _add_job(db, {"mode": "drill"})

        samples = parse_metrics(client.get("/metrics/ledger").text)

        assert queued.status is JobStatus.QUEUED
        assert sample(samples, "autoforge_backup_jobs", mode="backup", status="succeeded") == 3
        assert sample(samples, "autoforge_backup_jobs", mode="backup", status="failed") == 1
        assert sample(samples, "autoforge_backup_jobs", mode="drill", status="succeeded") == 1
        assert sample(samples, "autoforge_backup_jobs", mode="drill", status="queued") == 1
        last_backup = sample(
            samples, "autoforge_backup_last_success_timestamp_seconds", mode="backup"
        )
        last_drill = sample(
            samples, "autoforge_backup_last_success_timestamp_seconds", mode="drill"
        )
        assert newest.finished_at is not None
        assert legacy.finished_at is not None
        assert drill.finished_at is not None
        newest_backup = max(newest.finished_at, legacy.finished_at)
        assert last_backup == pytest.approx(newest_backup.timestamp(), abs=0.01)
        assert last_drill == pytest.approx(drill.finished_at.timestamp(), abs=0.01)
