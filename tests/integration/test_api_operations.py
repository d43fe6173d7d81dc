"""Operating the API: probes, metrics, OpenAPI, and what clients see during outages.

Outages are real: Redis is a closed port, the database is a path that cannot be opened,
an unmigrated file, or a file whose write lock another connection holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libsql
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from core.settings import Settings
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import JobError, JobStatus
from tasks.registry import kind_registry
from tests.support.api import (
    AUTH,
    TestClient,
    api_settings,
    client_for,
    ledger,
    llen,
)

pytestmark = pytest.mark.integration

CLOSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def lock_holder(migrated: Settings, db_path: Path) -> Iterator[Any]:
    """A raw libSQL connection holding the database's write lock for the test."""
    connection = libsql.connect(str(db_path), isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    yield connection
    connection.execute("ROLLBACK")
    connection.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(client: TestClient, path: str = "/metrics/ledger") -> Samples:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class TestProbes:
    def test_healthz(self, client: TestClient) -> None:
        response = client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_readyz_when_everything_answers(self, client: TestClient) -> None:
        response = client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"database": "ok", "redis": "ok"}

    def test_readyz_names_redis_when_it_is_down(self, migrated: Settings, db_path: Path) -> None:
        with client_for(api_settings(db_path, CLOSED_REDIS)) as client:
            response = client.get("/readyz")
            healthz = client.get("/healthz")

        assert response.status_code == 503
        assert response.json()["database"] == "ok"
        assert response.json()["redis"].startswith("error:")
        assert healthz.status_code == 200

    def test_readyz_names_the_database_when_it_cannot_be_opened(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        directory = tmp_path / "not-a-database"
        directory.mkdir()

        with client_for(api_settings(directory, redis_url)) as client:
            response = client.get("/readyz")

        assert response.status_code == 503
        assert response.json()["database"].startswith("error:")
        assert response.json()["redis"] == "ok"

    def test_readyz_names_the_database_when_it_is_not_migrated(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        with client_for(api_settings(tmp_path / "empty.db", redis_url)) as client:
            response = client.get("/readyz")

        assert response.status_code == 503
        assert "not migrated" in response.json()["database"]
        assert response.json()["redis"] == "ok"


class TestOutages:
    def test_database_lock_answers_503_with_retry_after(
        self,
        migrated: Settings,
        db_path: Path,
        redis_url: str,
        lock_holder: Any,
    ) -> None:
        # A write waits for the lock for DB_WRITE_MAX_SECONDS, trying again and again.
        settings = api_settings(db_path, redis_url, db_write_max_seconds=0.5)
        with client_for(settings, headers=AUTH) as client:
            response = client.post("/v1/jobs/canary", json={})
            samples = _scrape(client, "/metrics")

        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "database_busy"
        lock_retries = _sample(samples, "autoforge_db_lock_retries_total")
        assert lock_retries is not None
        assert lock_retries >= 2
        assert llen(redis_url, "canary") == 0

    def test_unopenable_database_answers_503(self, tmp_path: Path, redis_url: str) -> None:
        directory = tmp_path / "not-a-database"
        directory.mkdir()

        with client_for(api_settings(directory, redis_url), headers=AUTH) as client:
            response = client.post("/v1/jobs/canary", json={})

        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert str(directory) not in response.text

    def test_redis_down_still_accepts_the_job(
        self, migrated: Settings, db_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = api_settings(db_path, CLOSED_REDIS)
        with client_for(settings, headers=AUTH) as client:
            response = client.post("/v1/jobs/canary", json={"sleep_ms": 1})
            shown = client.get(response.headers["location"])
            samples = _scrape(client)

        assert response.status_code == 202
        assert shown.json()["status"] == "queued"
        with ledger(settings) as db, db.read_session() as session:
            stored = JobRepository(session).get(response.json()["id"])
        assert stored is not None
        assert stored.status is JobStatus.QUEUED
        assert stored.published_at is None  # left for the outbox sweeper
        assert _sample(samples, "autoforge_outbox_backlog") == 1
        assert _sample(samples, "autoforge_metrics_source_up", source="redis") == 0
        assert _sample(samples, "autoforge_queue_depth", queue="canary") is None
        assert "could not publish" in caplog.text

    def test_redis_down_cancel_still_cancels(self, migrated: Settings, db_path: Path) -> None:
        with client_for(api_settings(db_path, CLOSED_REDIS), headers=AUTH) as client:
            job_id = client.post("/v1/jobs/canary", json={}).json()["id"]
            response = client.post(f"/v1/jobs/{job_id}/cancel")

        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"


class TestMetrics:
    def test_jobs_by_kind_and_status_and_enqueued_counter(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        ids = [client.post("/v1/jobs/canary", json={}).json()["id"] for _ in range(3)]
        headers = {"Idempotency-Key": "once"}
        client.post("/v1/jobs/canary", json={}, headers=headers)
        client.post("/v1/jobs/canary", json={}, headers=headers)  # a replay: not counted
        client.post(f"/v1/jobs/{ids[0]}/cancel")

        samples = _scrape(client) | _scrape(client, "/metrics")

        assert _sample(samples, "autoforge_jobs_enqueued_total", kind="canary") == 4
        assert _sample(samples, "autoforge_jobs", kind="canary", status="queued") == 3
        assert _sample(samples, "autoforge_jobs", kind="canary", status="cancelled") == 1
        assert _sample(samples, "autoforge_outbox_backlog") == 0
        assert _sample(samples, "autoforge_queue_depth", queue="canary") == 4
        assert _sample(samples, "autoforge_queue_depth", queue="evaluations") == 0
        assert _sample(samples, "autoforge_metrics_source_up", source="database") == 1
        assert _sample(samples, "autoforge_metrics_source_up", source="redis") == 1
        assert _sample(samples, "autoforge_db_lock_retries_total") == 0

    def test_retries_and_durations_come_from_the_ledger(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        succeeded, failed = (client.post("/v1/jobs/canary", json={}).json()["id"] for _ in "ab")
        with ledger(app_settings) as db:

            def run(job_id: str, attempts: int, *, succeed: bool) -> None:
                # lease_s=0: each claim's lease is already expired, so the next claim
                # takes the job over as a new attempt (what a redelivery does).
                for _ in range(attempts):
                    write_transaction(db, lambda s: JobRepository(s).claim(job_id, lease_s=0))

                def finish(session: Session) -> None:
                    jobs = JobRepository(session)
                    if succeed:
                        assert jobs.succeed(job_id, attempt=attempts, result={"ok": True})
                    else:
                        assert jobs.fail(job_id, JobError("Boom", "no"), attempt=attempts)

                write_transaction(db, finish)

            run(succeeded, 3, succeed=True)
            run(failed, 1, succeed=False)

        samples = _scrape(client)

        # The two takeovers after a lapsed lease are lease lapses, not retries.
        assert _sample(samples, "autoforge_job_retries_total", kind="canary") is None
        assert _sample(samples, "autoforge_job_lease_lapses_total", kind="canary") == 2
        for status in ("succeeded", "failed"):
            labels = {"kind": "canary", "status": status}
            assert _sample(samples, "autoforge_job_duration_seconds_count", **labels) == 1
            total = _sample(samples, "autoforge_job_duration_seconds_sum", **labels)
            assert total is not None
            assert total >= 0
        assert _sample(samples, "autoforge_jobs", kind="canary", status="succeeded") == 1
        assert _sample(samples, "autoforge_jobs", kind="canary", status="failed") == 1

    def test_each_app_has_its_own_registry(self, app_settings: Settings) -> None:
        with (
            client_for(app_settings, headers=AUTH) as first,
            client_for(app_settings, headers=AUTH) as second,
        ):
            first.post("/v1/jobs/canary", json={})
            first.post("/v1/jobs/canary", json={})
            second.post("/v1/jobs/canary", json={})

            ours, theirs = _scrape(first, "/metrics"), _scrape(second, "/metrics")
            ledger_view = _scrape(second)

        assert _sample(ours, "autoforge_jobs_enqueued_total", kind="canary") == 2
        assert _sample(theirs, "autoforge_jobs_enqueued_total", kind="canary") == 1
        # The ledger is shared: both see all three.
        assert _sample(ledger_view, "autoforge_jobs", kind="canary", status="queued") == 3

    def test_scrape_survives_a_database_outage(self, tmp_path: Path, redis_url: str) -> None:
        directory = tmp_path / "not-a-database"
        directory.mkdir()

        with client_for(api_settings(directory, redis_url)) as client:
            samples = _scrape(client)

        assert _sample(samples, "autoforge_metrics_source_up", source="database") == 0
        assert _sample(samples, "autoforge_metrics_source_up", source="redis") == 1
        assert _sample(samples, "autoforge_outbox_backlog") is None


class TestDocs:
    def test_openapi_and_docs_are_served(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()

        assert client.get("/docs").status_code == 200
        for path in (
            "/v1/jobs",
            "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/cancel",
            "/v1/jobs/{job_id}/retry",
            "/v1/prompts",
            "/v1/prompts/{prompt_id}",
            "/v1/prompts/{prompt_id}/versions",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            assert path in schema["paths"]
        canary = schema["paths"]["/v1/jobs/canary"]["post"]
        assert canary["security"] == [{"HTTPBearer": []}]
        assert "202" in canary["responses"]

    def test_each_kind_that_accepts_jobs_has_its_documented_enqueue_routes(
        self, client: TestClient
    ) -> None:
        schema = client.get("/openapi.json").json()
        kinds = kind_registry().enabled()

        assert kinds
        for kind in kinds:
            enqueue = schema["paths"][f"/v1/jobs/{kind.name}"]["post"]
            assert enqueue["summary"] == kind.summary
            assert enqueue["description"] == kind.description
            body = enqueue["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"] == f"#/components/schemas/{kind.arguments.__name__}"
            assert f"/v1/jobs/{kind.name}:batch" in schema["paths"]
        # Nothing else is enqueued under /v1/jobs/: the other paths are the ledger's.
        enqueued = {
            path.removesuffix(":batch")
            for path in schema["paths"]
            if path.startswith("/v1/jobs/") and "{" not in path
        }
        assert enqueued == {f"/v1/jobs/{kind.name}" for kind in kinds}
