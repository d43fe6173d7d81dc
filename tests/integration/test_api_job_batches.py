"""``POST /v1/jobs/{kind}:batch`` against a real libSQL file and a real Redis: many jobs
of a kind in one ledger transaction, all or none, each item checked like the single
endpoint's body, replayable as a whole with an Idempotency-Key.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from db.repositories.jobs import JobRepository
from domain.jobs import Job, JobStatus
from jobs.outbox import MAX_BATCH
from tests.support.api import TestClient, ledger, llen

pytestmark = pytest.mark.integration

PATH = "/v1/jobs/canary:batch"


def _ledger(settings: Settings) -> list[Job]:
    with ledger(settings) as db, db.read_session() as session:
        return JobRepository(session).list_recent(limit=1000)


def _post(client: TestClient, items: list[dict[str, Any]], key: str | None = None) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(PATH, json={"items": items}, headers=headers)


def test_a_batch_is_recorded_in_order_and_published(
    client: TestClient, app_settings: Settings, redis_url: str
) -> None:
    items = [{"sleep_ms": ms} for ms in (0, 5, 10)]
    response = _post(client, items)
    assert response.status_code == 202, response.text
    jobs = response.json()["items"]
    assert [job["arguments"]["sleep_ms"] for job in jobs] == [0, 5, 10]
    assert {job["status"] for job in jobs} == {"queued"}
    stored = {job.id: job for job in _ledger(app_settings)}
    assert set(stored) == {job["id"] for job in jobs}
    assert all(job.status is JobStatus.QUEUED for job in stored.values())
    assert llen(redis_url, "canary") == 3
    assert client.get(f"/v1/jobs/{jobs[1]['id']}").json()["arguments"]["sleep_ms"] == 5


def test_one_invalid_item_refuses_the_whole_batch_naming_the_item_and_field(
    client: TestClient, app_settings: Settings, redis_url: str
) -> None:
    response = _post(client, [{"sleep_ms": 0}, {"sleep_ms": 1}, {"sleep_ms": -1}])
    assert response.status_code == 422, response.text
    locations = [problem["loc"] for problem in response.json()["detail"]]
    assert locations == [["body", "items", 2, "sleep_ms"]]
    assert _ledger(app_settings) == []
    assert llen(redis_url, "canary") == 0


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
def test_an_empty_or_oversized_batch_is_refused(
    client: TestClient, app_settings: Settings, count: int
) -> None:
    response = _post(client, [{}] * count)
    assert response.status_code == 422, response.text
    assert _ledger(app_settings) == []


def test_a_replayed_key_returns_the_same_jobs_and_other_items_conflict(
    client: TestClient, app_settings: Settings, redis_url: str
) -> None:
    items = [{"sleep_ms": 1}, {"sleep_ms": 2}]
    first = _post(client, items, key="nightly-1")
    assert first.status_code == 202, first.text
    replay = _post(client, items, key="nightly-1")
    assert replay.status_code == 200, replay.text
    assert [job["id"] for job in replay.json()["items"]] == [
        job["id"] for job in first.json()["items"]
    ]
    for other in ([{"sleep_ms": 1}, {"sleep_ms": 3}], items[:1], [*items, {"sleep_ms": 4}]):
        conflict = _post(client, other, key="nightly-1")
        assert conflict.status_code == 409, (other, conflict.text)
    assert len(_ledger(app_settings)) == 2
    assert llen(redis_url, "canary") == 2
    # A batch's key is its own: the single endpoint with the same key makes a new job.
    single = client.post(
        "/v1/jobs/canary", json={"sleep_ms": 1}, headers={"Idempotency-Key": "nightly-1"}
    )
    assert single.status_code == 202, single.text


def test_an_unknown_kind_batch_is_404_naming_the_kinds(client: TestClient) -> None:
    response = client.post("/v1/jobs/nope:batch", json={"items": [{}]})
    assert response.status_code == 404, response.text
    assert "'nope'" in response.text
    assert "canary" in response.text


def test_the_batch_route_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][PATH]["post"]
    assert "All or nothing" in operation["description"]
    assert {"200", "202", "409", "422"} <= set(operation["responses"])
