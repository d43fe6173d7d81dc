"""``/v1/jobs`` against a real libSQL file and a real Redis: enqueue, read, list, cancel, retry.

What the API answers is checked against the ledger (read with a separate database
handle) and against the Redis list Celery delivers from (``canary``).
"""

from __future__ import annotations

import pytest

from core.settings import Settings
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobStatus
from tasks.registry import kind_registry
from tests.support.api import (
    TestClient,
    ledger,
    llen,
)

pytestmark = pytest.mark.integration

# Kinds without a declaration (tasks/<kind>/kind.py) are unknown to the API.
UNDECLARED_KINDS = ("teleport",)
# The kinds that accept jobs, as the application declares them (in name order).
ALL_KINDS = [kind.name for kind in kind_registry().enabled()]


def _stored(settings: Settings, job_id: str) -> Job:
    with ledger(settings) as db, db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None, f"job {job_id} is not in the ledger"
    return job


def _all_jobs(settings: Settings) -> list[Job]:
    with ledger(settings) as db, db.read_session() as session:
        return JobRepository(session).list_recent(limit=1000)


def _enqueue(client: TestClient, **body: int) -> str:
    response = client.post("/v1/jobs/canary", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert isinstance(job_id, str)
    return job_id


def _fail(settings: Settings, job_id: str) -> None:
    with ledger(settings) as db:
        changed = write_transaction(
            db, lambda s: JobRepository(s).fail(job_id, JobError("CanaryFailure", "on purpose"))
        )
    assert changed


class TestEnqueue:
    def test_canary_is_accepted_recorded_and_published(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        response = client.post("/v1/jobs/canary", json={"sleep_ms": 10, "fail_times": 2})

        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["kind"] == "canary"
        assert job["status"] == "queued"
        assert job["arguments"] == {"sleep_ms": 10, "fail_times": 2}
        assert job["attempts"] == 0
        assert job["max_attempts"] == kind_registry().max_attempts(app_settings, "canary")
        assert job["progress"] == 0.0
        assert job["result"] is None
        assert job["error"] is None
        assert job["idempotency_key"] is None
        assert job["created_at"].endswith("Z")
        assert job["started_at"] is None
        assert job["finished_at"] is None

        stored = _stored(app_settings, job["id"])
        assert stored.status is JobStatus.QUEUED
        assert stored.arguments == {"sleep_ms": 10, "fail_times": 2}
        assert stored.published_at is not None
        assert llen(redis_url, "canary") == 1

    def test_defaults_are_recorded(self, client: TestClient, app_settings: Settings) -> None:
        job_id = _enqueue(client)

        assert _stored(app_settings, job_id).arguments == {"sleep_ms": 0, "fail_times": 0}

    def test_idempotency_key_replay_returns_the_same_job(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        headers = {"Idempotency-Key": "order-17"}
        first = client.post("/v1/jobs/canary", json={"sleep_ms": 5}, headers=headers)
        replay = client.post("/v1/jobs/canary", json={"sleep_ms": 5}, headers=headers)

        assert first.status_code == 202
        assert replay.status_code == 200
        assert replay.json()["id"] == first.json()["id"]
        assert replay.json()["idempotency_key"] == "order-17"
        assert replay.headers["location"] == first.headers["location"]
        assert len(_all_jobs(app_settings)) == 1
        assert llen(redis_url, "canary") == 1

    def test_replay_compares_the_validated_body(self, client: TestClient) -> None:
        # Defaults are filled in before the request is fingerprinted: {} is {"sleep_ms": 0, ...}.
        headers = {"Idempotency-Key": "same-meaning"}
        first = client.post("/v1/jobs/canary", json={}, headers=headers)
        replay = client.post(
            "/v1/jobs/canary", json={"fail_times": 0, "sleep_ms": 0}, headers=headers
        )

        assert (first.status_code, replay.status_code) == (202, 200)
        assert replay.json()["id"] == first.json()["id"]

    def test_same_key_with_another_body_conflicts(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        headers = {"Idempotency-Key": "order-18"}
        client.post("/v1/jobs/canary", json={"sleep_ms": 5}, headers=headers)
        conflict = client.post("/v1/jobs/canary", json={"sleep_ms": 6}, headers=headers)

        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "idempotency_conflict"
        assert "Idempotency-Key" in conflict.json()["error"]["message"]
        assert len(_all_jobs(app_settings)) == 1
        assert llen(redis_url, "canary") == 1

    def test_unknown_kind_is_404_listing_the_kinds(self, client: TestClient) -> None:
        response = client.post("/v1/jobs/teleport", json={})

        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "unknown_job_kind"
        assert error["kinds"] == ALL_KINDS
        for kind in ALL_KINDS:
            assert kind in error["message"]

    @pytest.mark.parametrize("kind", UNDECLARED_KINDS)
    def test_kinds_without_a_declaration_are_404_like_any_unknown_kind(
        self, client: TestClient, app_settings: Settings, kind: str
    ) -> None:
        response = client.post(f"/v1/jobs/{kind}", json={"anything": 1})

        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "unknown_job_kind"
        assert error["kinds"] == ALL_KINDS
        assert kind in error["message"]
        assert _all_jobs(app_settings) == []


class TestRead:
    def test_get_returns_the_job(self, client: TestClient) -> None:
        job_id = _enqueue(client, sleep_ms=3)

        response = client.get(f"/v1/jobs/{job_id}")

        assert response.status_code == 200
        assert response.json()["id"] == job_id
        assert response.json()["arguments"] == {"sleep_ms": 3, "fail_times": 0}

    def test_get_missing_job_is_404(self, client: TestClient) -> None:
        response = client.get("/v1/jobs/no-such-job")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_error_and_finish_time_are_shown(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        job_id = _enqueue(client)
        _fail(app_settings, job_id)

        job = client.get(f"/v1/jobs/{job_id}").json()

        assert job["status"] == "failed"
        assert job["error"] == {"kind": "CanaryFailure", "message": "on purpose"}
        assert job["finished_at"].endswith("Z")


class TestList:
    def test_pages_cover_every_job_once_newest_first(self, client: TestClient) -> None:
        created = [_enqueue(client, sleep_ms=i) for i in range(7)]

        seen: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            response = client.get("/v1/jobs", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [job["id"] for job in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10, "pagination does not end"

        assert pages == 3
        assert seen == list(reversed(created))

    def test_filters_by_kind_and_status(self, client: TestClient, app_settings: Settings) -> None:
        queued = [_enqueue(client) for _ in range(2)]
        cancelled = _enqueue(client)
        assert client.post(f"/v1/jobs/{cancelled}/cancel").status_code == 200
        with ledger(app_settings) as db:
            backup = write_transaction(
                db, lambda s: JobRepository(s).add(Job(kind="backup", arguments={}))
            )

        def ids(**params: str) -> list[str]:
            response = client.get("/v1/jobs", params=params)
            assert response.status_code == 200, response.text
            return [job["id"] for job in response.json()["items"]]

        assert ids(kind="canary") == [cancelled, *reversed(queued)]
        assert ids(kind="backup") == [backup.id]
        assert ids(status="cancelled") == [cancelled]
        assert ids(kind="canary", status="queued") == list(reversed(queued))
        assert ids(kind="backup", status="cancelled") == []

    def test_filtered_pages_follow_the_filter(self, client: TestClient) -> None:
        created = [_enqueue(client) for _ in range(5)]
        for job_id in created[1::2]:
            client.post(f"/v1/jobs/{job_id}/cancel")

        first = client.get("/v1/jobs", params={"status": "queued", "limit": 2}).json()
        second = client.get(
            "/v1/jobs", params={"status": "queued", "limit": 2, "cursor": first["next_cursor"]}
        ).json()

        queued = list(reversed(created[0::2]))
        assert [job["id"] for job in first["items"]] == queued[:2]
        assert [job["id"] for job in second["items"]] == queued[2:]
        assert second["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor", ["not-a-cursor", "", "bm8tc2VwYXJhdG9y", "MjAyNi0wMS0wMXx4", "%%%", "A" * 500]
    )
    def test_invalid_cursor_is_422_naming_cursor(self, client: TestClient, cursor: str) -> None:
        response = client.get("/v1/jobs", params={"cursor": cursor})

        assert response.status_code == 422
        assert ["query", "cursor"] in [error["loc"] for error in response.json()["detail"]]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"kind": "teleport"}, "kind"),
            ({"status": "sleeping"}, "status"),
            ({"limit": "0"}, "limit"),
            ({"limit": "201"}, "limit"),
            ({"limit": "many"}, "limit"),
        ],
    )
    def test_invalid_filters_are_422_naming_the_field(
        self, client: TestClient, params: dict[str, str], field: str
    ) -> None:
        response = client.get("/v1/jobs", params=params)

        assert response.status_code == 422
        assert ["query", field] in [error["loc"] for error in response.json()["detail"]]


class TestCancel:
    def test_cancel_queued_job_then_again_conflicts(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        job_id = _enqueue(client)

        first = client.post(f"/v1/jobs/{job_id}/cancel")
        second = client.post(f"/v1/jobs/{job_id}/cancel")

        assert first.status_code == 200
        assert first.json()["status"] == "cancelled"
        assert first.json()["finished_at"] is not None
        assert _stored(app_settings, job_id).status is JobStatus.CANCELLED
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "job_state_conflict"
        assert "cancelled" in second.json()["error"]["message"]

    def test_cancel_running_job(self, client: TestClient, app_settings: Settings) -> None:
        job_id = _enqueue(client)
        with ledger(app_settings) as db:
            assert write_transaction(db, lambda s: JobRepository(s).claim(job_id, lease_s=60))

        response = client.post(f"/v1/jobs/{job_id}/cancel")

        assert response.status_code == 200
        assert _stored(app_settings, job_id).status is JobStatus.CANCELLED

    def test_cancel_failed_job_conflicts(self, client: TestClient, app_settings: Settings) -> None:
        job_id = _enqueue(client)
        _fail(app_settings, job_id)

        response = client.post(f"/v1/jobs/{job_id}/cancel")

        assert response.status_code == 409
        assert _stored(app_settings, job_id).status is JobStatus.FAILED

    def test_cancel_missing_job_is_404(self, client: TestClient) -> None:
        assert client.post("/v1/jobs/no-such-job/cancel").status_code == 404


class TestRetry:
    def test_retry_failed_job_requeues_and_republishes(
        self, client: TestClient, app_settings: Settings, redis_url: str
    ) -> None:
        job_id = _enqueue(client)
        _fail(app_settings, job_id)
        assert llen(redis_url, "canary") == 1

        response = client.post(f"/v1/jobs/{job_id}/retry")

        assert response.status_code == 202
        assert response.headers["location"] == f"/v1/jobs/{job_id}"
        job = response.json()
        assert job["status"] == "queued"
        assert job["attempts"] == 0
        assert job["error"] is None
        assert job["finished_at"] is None
        stored = _stored(app_settings, job_id)
        assert stored.status is JobStatus.QUEUED
        assert stored.published_at is not None
        assert llen(redis_url, "canary") == 2

    @pytest.mark.parametrize("cancel_first", [False, True])
    def test_retry_of_a_job_that_did_not_fail_conflicts(
        self, client: TestClient, app_settings: Settings, cancel_first: bool
    ) -> None:
        job_id = _enqueue(client)
        if cancel_first:
            client.post(f"/v1/jobs/{job_id}/cancel")

        response = client.post(f"/v1/jobs/{job_id}/retry")

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "job_state_conflict"
        assert _stored(app_settings, job_id).status is not JobStatus.FAILED

    def test_retry_missing_job_is_404(self, client: TestClient) -> None:
        assert client.post("/v1/jobs/no-such-job/retry").status_code == 404
