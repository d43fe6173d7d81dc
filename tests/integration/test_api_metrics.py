"""The API's metrics: HTTP requests by route template, and the ledger exported once.

Each test builds its own app on a migrated libSQL file and the session's real Redis.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from api.app import create_app
from core.settings import Settings
from db.column_types import utcnow
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import JobError
from tests.support.api import (
    AUTH,
    TestClient,
    api_settings,
    client_for,
    ledger,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def app_settings(migrated: Settings, db_path: Path, redis_url: str) -> Settings:
    return api_settings(db_path, redis_url, api_max_body_bytes=2048)


def _scrape(client: TestClient, path: str) -> Samples:
    response = client.get(path)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _families(client: TestClient, path: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(client.get(path).text)}


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class TestHttpMetrics:
    def test_requests_are_counted_by_route_template_method_and_status(
        self, client: TestClient
    ) -> None:
        first = client.post("/v1/jobs/canary", json={}).json()["id"]
        second = client.post("/v1/jobs/canary", json={}).json()["id"]
        client.get(f"/v1/jobs/{first}")
        client.get(f"/v1/jobs/{second}")
        assert client.get("/v1/jobs/no-such-job").status_code == 404
        assert client.post("/v1/jobs/canary", json={"sleep_ms": -1}).status_code == 422
        assert client.get("/no/such/path").status_code == 404
        refused = client.post("/v1/jobs/canary", content=b"{" + b" " * 4096 + b"}")
        assert refused.status_code == 413

        samples = _scrape(client, "/metrics")

        requests = "autoforge_http_requests_total"
        post = {"method": "POST", "route": "/v1/jobs/canary"}
        get = {"method": "GET", "route": "/v1/jobs/{job_id}"}
        assert _value(samples, requests, **post, status="202") == 2
        assert _value(samples, requests, **post, status="422") == 1
        assert _value(samples, requests, **get, status="200") == 2
        assert _value(samples, requests, **get, status="404") == 1
        unmatched = {"route": "unmatched"}
        assert _value(samples, requests, method="GET", **unmatched, status="404") == 1
        assert _value(samples, requests, method="POST", **unmatched, status="413") == 1
        # No label carries an id: one series per route template.
        routes = {dict(labels).get("route") for name, labels in samples if name == requests}
        assert not any(job_id in str(routes) for job_id in (first, second, "no-such-job"))
        latency = "autoforge_http_request_duration_seconds"
        assert _value(samples, f"{latency}_count", **get) == 3
        assert _value(samples, f"{latency}_bucket", **get, le="+Inf") == 3
        assert _value(samples, f"{latency}_count", **post) == 3

    def test_an_unhandled_error_is_counted_as_a_500(self, app_settings: Settings) -> None:
        app = create_app(app_settings)

        @app.get("/v1/broken/{item}")
        def broken(item: str) -> None:
            raise RuntimeError(f"a bug while answering for {item}")

        with TestClient(app, headers=AUTH, raise_server_exceptions=False) as client:
            failed = client.get("/v1/broken/one")
            samples = _scrape(client, "/metrics")

        assert failed.status_code == 500
        labels = {"method": "GET", "route": "/v1/broken/{item}"}
        assert _value(samples, "autoforge_http_requests_total", **labels, status="500") == 1
        assert _value(samples, "autoforge_http_request_duration_seconds_count", **labels) == 1


class TestExportedOnce:
    def test_process_and_ledger_metrics_are_on_separate_paths(self, client: TestClient) -> None:
        client.post("/v1/jobs/canary", json={})

        process = _families(client, "/metrics")
        shared = _families(client, "/metrics/ledger")

        assert {
            "autoforge_jobs_enqueued",
            "autoforge_db_lock_retries",
            "autoforge_http_requests",
            "autoforge_http_request_duration_seconds",
        } <= process
        assert {
            "autoforge_jobs",
            "autoforge_job_status_changes",
            "autoforge_job_duration_seconds",
            "autoforge_job_start_delay_seconds",
            "autoforge_outbox_backlog",
            "autoforge_queue_depth",
        } <= shared
        assert process.isdisjoint(shared)

    def test_every_replica_answers_the_same_ledger_view(self, app_settings: Settings) -> None:
        with (
            client_for(app_settings, headers=AUTH) as first,
            client_for(app_settings, headers=AUTH) as second,
        ):
            first.post("/v1/jobs/canary", json={})
            second.post("/v1/jobs/evaluation", json={})  # 422: nothing accepted
            second.post("/v1/jobs/canary", json={})

            assert _scrape(first, "/metrics/ledger") == _scrape(second, "/metrics/ledger")
            ours = _scrape(first, "/metrics")

        assert _value(ours, "autoforge_jobs_enqueued_total", kind="canary") == 1

    def test_counters_do_not_fall_when_finished_jobs_are_pruned(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        ids = [client.post("/v1/jobs/canary", json={}).json()["id"] for _ in range(3)]
        with ledger(app_settings) as db:
            for job_id, succeeds in zip(ids, (True, True, False), strict=True):

                def run(session: Session, job_id: str = job_id, succeeds: bool = succeeds) -> None:
                    jobs = JobRepository(session)
                    assert jobs.claim(job_id, lease_s=30) is not None
                    if succeeds:
                        assert jobs.succeed(job_id, attempt=1, result={})
                    else:
                        assert jobs.fail(job_id, JobError("Boom", "no"), attempt=1)

                write_transaction(db, run)
        before = _scrape(client, "/metrics/ledger")
        with ledger(app_settings) as db:
            cutoff = utcnow() + timedelta(days=1)
            assert write_transaction(db, lambda s: JobRepository(s).prune_finished(before=cutoff))
        after = _scrape(client, "/metrics/ledger")

        changes = "autoforge_job_status_changes_total"
        count = "autoforge_job_duration_seconds_count"
        for samples in (before, after):
            assert _value(samples, changes, kind="canary", status="succeeded") == 2
            assert _value(samples, changes, kind="canary", status="failed") == 1
            assert _value(samples, count, kind="canary", status="succeeded") == 2
            assert _value(samples, "autoforge_job_start_delay_seconds_count", kind="canary") == 3
        assert _value(before, "autoforge_jobs", kind="canary", status="succeeded") == 2
        assert _value(after, "autoforge_jobs", kind="canary", status="succeeded") == 0
