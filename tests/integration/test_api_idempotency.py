"""Idempotency keys belong to the API key that sent them; the scheduler's are out of reach.

Two API keys are configured (:data:`KEY`, :data:`OTHER_KEY`). A replay only finds jobs
of the same API key, and a client that sends the scheduler's key for tonight's backup
(``schedule:backup:backup:<day>``) neither blocks nor reaches the scheduled job, which is
made here by the same code as beat's fire and the sweeper's catch-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.settings import Settings
from db.models import JobModel
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from jobs.runtime import Runtime
from jobs.schedule import catch_up, enqueue_fire, fire_of, scheduled_jobs
from tasks.registry import kind_registry
from tests.support.api import (
    KEY,
    OTHER_KEY,
    TestClient,
    client_for,
    ledger,
)
from workers.beat import beat_schedule

pytestmark = pytest.mark.integration

BACKUP = {"mode": "backup", "prune": True}


class KeyedClient:
    """One API process seen through one API key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self._client = client
        self._auth = {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: Any = None, key: str | None = None) -> Any:
        headers = dict(self._auth)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self._client.post(path, json=body, headers=headers)

    def get(self, path: str) -> Any:
        return self._client.get(path, headers=self._auth)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self._client.app.state.resources.runtime  # type: ignore[attr-defined]
        return runtime


@pytest.fixture
def clients(app_settings: Settings) -> Iterator[tuple[KeyedClient, KeyedClient]]:
    """Two clients of one API process, each with its own API key."""
    with client_for(app_settings) as client:
        yield KeyedClient(client, KEY), KeyedClient(client, OTHER_KEY)


def _stored_keys(settings: Settings) -> list[str | None]:
    with ledger(settings) as db, db.read_session() as session:
        return list(session.scalars(select(JobModel.idempotency_key).order_by(JobModel.id)))


def _job(settings: Settings, job_id: str) -> Job:
    with ledger(settings) as db, db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


def _running_since(settings: Settings, at: datetime) -> None:
    """A job accepted at ``at``: the system has been running since then."""

    def unit(session: Session) -> None:
        job = JobRepository(session).add(Job(kind="canary", arguments={}))
        session.execute(update(JobModel).where(JobModel.id == job.id).values(created_at=at))

    with ledger(settings) as db:
        write_transaction(db, unit)


def test_two_api_keys_with_the_same_key_and_body_get_two_jobs(
    clients: tuple[KeyedClient, KeyedClient], app_settings: Settings
) -> None:
    mine, theirs = clients
    first = mine.post("/v1/jobs/canary", {"sleep_ms": 5}, key="order-17")
    other = theirs.post("/v1/jobs/canary", {"sleep_ms": 5}, key="order-17")

    assert (first.status_code, other.status_code) == (202, 202)
    assert first.json()["id"] != other.json()["id"]
    assert first.json()["idempotency_key"] == other.json()["idempotency_key"] == "order-17"
    # Each key still replays its own job.
    replay = mine.post("/v1/jobs/canary", {"sleep_ms": 5}, key="order-17")
    assert (replay.status_code, replay.json()["id"]) == (200, first.json()["id"])
    replay = theirs.post("/v1/jobs/canary", {"sleep_ms": 5}, key="order-17")
    assert (replay.status_code, replay.json()["id"]) == (200, other.json()["id"])
    # ... and only its own: another body under the same key is a conflict for that key.
    assert theirs.post("/v1/jobs/canary", {"sleep_ms": 6}, key="order-17").status_code == 409

    stored = _stored_keys(app_settings)
    assert len(stored) == 2
    assert len(set(stored)) == 2
    for key in stored:
        assert key is not None
        assert key.endswith(":order-17")
        assert KEY not in key
        assert OTHER_KEY not in key


def test_a_client_cannot_reach_the_scheduled_backup_through_its_key(
    clients: tuple[KeyedClient, KeyedClient], app_settings: Settings
) -> None:
    mine, _ = clients
    now = datetime.now(UTC)
    schedule = beat_schedule(app_settings, kind_registry())
    _, arguments, period, cron = schedule["nightly-backup"]["args"]
    made, key = enqueue_fire(mine.runtime, "backup", arguments, period, cron, now)
    assert made.created
    assert key.startswith("schedule:backup:backup:")

    # The same key and body from a client: a job of its own, not the scheduler's ...
    answer = mine.post("/v1/jobs/backup", arguments, key=key)
    assert answer.status_code == 202, answer.text
    assert answer.json()["id"] != made.job.id
    assert answer.json()["idempotency_key"] == key
    # ... so cancelling it leaves the night's backup alone.
    assert mine.post(f"/v1/jobs/{answer.json()['id']}/cancel").status_code == 200
    assert _job(app_settings, made.job.id).status is JobStatus.QUEUED
    again, _ = enqueue_fire(mine.runtime, "backup", arguments, period, cron, now)
    assert (again.created, again.job.id) == (False, made.job.id)


def test_a_client_cannot_block_the_scheduled_jobs_by_using_their_keys_first(
    clients: tuple[KeyedClient, KeyedClient], app_settings: Settings
) -> None:
    """The attack: post tonight's key (or the drill's, with another body) before the
    scheduler, cancel that job, and the period's backup (or drill) never happens."""
    mine, _ = clients
    now = datetime.now(UTC)
    _running_since(app_settings, now - timedelta(days=8))  # so the last fires are caught up
    schedule = beat_schedule(app_settings, kind_registry())
    fires = {name: schedule[name]["args"] for name in ("nightly-backup", "restore-drill")}
    scheduled = {job.name: job for job in scheduled_jobs(app_settings, kind_registry())}
    keys = {name: scheduled[name].key(fire_of(cron, now)) for name, (*_, cron) in fires.items()}
    for name, body in (("nightly-backup", BACKUP), ("restore-drill", {"mode": "backup"})):
        answer = mine.post("/v1/jobs/backup", body, key=keys[name])
        assert answer.status_code == 202, answer.text
        assert mine.post(f"/v1/jobs/{answer.json()['id']}/cancel").status_code == 200

    # The sweeper's catch-up and beat's own fire make (and then find) the real jobs.
    made = [m for m in catch_up(mine.runtime, now) if m.name in fires]
    assert sorted((m.name, m.key, m.created) for m in made) == [
        ("nightly-backup", keys["nightly-backup"], True),
        ("restore-drill", keys["restore-drill"], True),
    ]
    for caught in made:
        kind, arguments, period, cron = fires[caught.name]
        fired, _ = enqueue_fire(mine.runtime, kind, arguments, period, cron, now)
        assert (fired.created, fired.job.id) == (False, caught.job_id)
        job = _job(app_settings, caught.job_id)
        assert job.status is JobStatus.QUEUED
        assert job.idempotency_key == caught.key
        # The API shows no key for it: the scheduler's key is not a client's.
        assert mine.get(f"/v1/jobs/{job.id}").json()["idempotency_key"] is None
