"""``POST /v1/jobs/replica-sync``, ``GET /v1/replicas``, ``/readyz`` for stale replicas,
and the replica metrics, through the API in the test process (real libSQL and Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from core.settings import ReplicaConfig, Settings
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.jobs import Job
from domain.prompts import Prompt
from jobs.publisher import JobPublisher
from tasks.registry import kind_registry
from tasks.replica_sync.models import ReplicaSyncModel
from tasks.replica_sync.repository import ReplicaSyncRecord, ReplicaSyncRepository
from tests.conftest import copy_migrated, make_settings
from tests.support.api import AUTH, TestClient, api_settings, client_for, ledger, llen
from workers.app import create_celery

pytestmark = pytest.mark.integration

TOKEN = "api-replica-token-SECRET-77aa"


def _replicas(tmp_path: Path) -> list[ReplicaConfig]:
    return [
        ReplicaConfig.model_validate(
            {
                "name": name,
                "path": str(tmp_path / f"{name}.db"),
                "sync_url": "https://primary.example.com",
                "auth_token": TOKEN,
                "protocol": "turso-sync",
                "interval_s": 10,
                **extra,
            }
        )
        for name, extra in (("edge-1", {}), ("far", {"host": "other-host"}))
    ]


@pytest.fixture
def settings_with_replicas(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> Settings:
    return api_settings(
        db_path,
        redis_url,
        replicas=_replicas(tmp_path),
        replica_host="this-host",
        replica_stale_after_s=60,
    )


@pytest.fixture
def replica_client(settings_with_replicas: Settings) -> Iterator[TestClient]:
    with client_for(settings_with_replicas, headers=AUTH) as client:
        yield client


def _add(settings: Settings, replica: str, status: str, ago_s: float, **fields: object) -> None:
    record = ReplicaSyncRecord(
        replica=replica,
        host="this-host",
        job_id=None,
        status=status,
        started_at=datetime.now(UTC) - timedelta(seconds=ago_s),
        duration_s=0.25,
        **fields,  # type: ignore[arg-type]
    )
    with ledger(settings) as db:
        write_transaction(db, lambda s: ReplicaSyncRepository(s).add(record))


def test_a_sync_job_is_routed_to_its_replicas_host(
    replica_client: TestClient, redis_url: str
) -> None:
    here = replica_client.post("/v1/jobs/replica-sync", json={"replica": "edge-1"})
    there = replica_client.post("/v1/jobs/replica-sync", json={"replica": "far"})
    every = replica_client.post("/v1/jobs/replica-sync", json={"all": True})

    assert [r.status_code for r in (here, there, every)] == [202, 202, 202]
    assert llen(redis_url, "replicas.this-host") == 2
    assert llen(redis_url, "replicas.other-host") == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"replica": "nope"}, ["body", "replica"]),
        ({"all": True, "host": "no-such-host"}, ["body", "all"]),
    ],
)
def test_an_undeclared_replica_is_refused_before_it_is_queued(
    replica_client: TestClient, body: dict[str, object], loc: list[str]
) -> None:
    response = replica_client.post("/v1/jobs/replica-sync", json=body)

    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


def test_replicas_report_last_success_lag_and_last_error_without_tokens(
    replica_client: TestClient, settings_with_replicas: Settings
) -> None:
    _add(settings_with_replicas, "edge-1", "succeeded", 30, changed=True, revision="7", lag_s=9.5)
    _add(settings_with_replicas, "edge-1", "skipped", 20)
    _add(settings_with_replicas, "edge-1", "failed", 10, error="replica 'edge-1': HTTP 503")

    response = replica_client.get("/v1/replicas")

    assert response.status_code == 200
    assert TOKEN not in response.text
    edge, far = response.json()["items"]
    assert (edge["name"], edge["host"], edge["protocol"]) == ("edge-1", "this-host", "turso-sync")
    assert edge["last_changed"] is True
    assert edge["last_revision"] == "7"
    assert 29 <= edge["lag_s"] < 120
    assert edge["last_error"] == "replica 'edge-1': HTTP 503"
    assert edge["syncs"] == {"succeeded": 1, "skipped": 1, "failed": 1}
    assert edge["stale"] is False
    assert (far["host"], far["lag_s"], far["stale"]) == ("other-host", None, True)

    metrics = replica_client.get("/metrics/ledger").text
    assert 'autoforge_replica_syncs{replica="edge-1",status="skipped"} 1.0' in metrics
    assert 'autoforge_replica_lag_seconds{replica="edge-1"}' in metrics
    assert 'autoforge_replica_last_success_timestamp_seconds{replica="edge-1"}' in metrics


def test_readyz_names_a_stale_replica_of_this_host_only(
    replica_client: TestClient, settings_with_replicas: Settings
) -> None:
    # "far" is on another host and never synced: not this host's business.
    _add(settings_with_replicas, "edge-1", "succeeded", 5)
    assert replica_client.get("/readyz").json() == {
        "database": "ok",
        "redis": "ok",
        "replicas": "ok",
    }

    # Ten minutes later (moved back in time), past REPLICA_STALE_AFTER_S.
    earlier = datetime.now(UTC) - timedelta(seconds=600)
    with ledger(settings_with_replicas) as db:
        write_transaction(
            db, lambda s: s.execute(update(ReplicaSyncModel).values(started_at=earlier))
        )
    response = replica_client.get("/readyz")

    assert response.status_code == 503
    message = response.json()["replicas"]
    assert message.startswith("error: stale replica(s) on this-host: edge-1 (")
    assert "REPLICA_STALE_AFTER_S=60" in message


def test_readyz_says_why_the_replicas_cannot_be_checked(
    replica_client: TestClient, settings_with_replicas: Settings
) -> None:
    # The replica sync's own table is gone: the database answers, the kind's check fails.
    with ledger(settings_with_replicas) as db:
        write_transaction(db, lambda s: s.execute(text("DROP TABLE replica_syncs")))

    response = replica_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert (body["database"], body["redis"]) == ("ok", "ok")
    assert body["replicas"].startswith("error: ")
    assert "replica_syncs" in body["replicas"]


def test_stale_tolerant_reads_come_from_the_read_replica_and_writes_go_to_the_primary(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path, migrated_template: Path
) -> None:
    replica_file = copy_migrated(migrated_template, tmp_path / "replicas" / "edge-1.db")
    replica = ReplicaConfig.model_validate(
        {
            "name": "edge-1",
            "path": str(replica_file),
            "sync_url": "https://primary.example.com",
            "protocol": "libsql",
        }
    )
    # What the replica holds (as of its last sync): one prompt.
    replica_settings = make_settings(replica_file)
    with ledger(replica_settings) as db:
        write_transaction(
            db, lambda s: PromptRepository(s).add(Prompt(title="old", content="c", user_id="u"))
        )
    settings = api_settings(
        db_path, redis_url, replicas=[replica], replica_host="h", read_replica="edge-1"
    )
    with client_for(settings, headers=AUTH) as client:
        created = client.post("/v1/prompts", json={"title": "new", "content": "c", "user_id": "u"})
        assert created.status_code == 201, created.text
        prompt_id = created.json()["id"]

        # The listing may lag: it comes from the replica, which has not synced "new" yet.
        listed = client.get("/v1/prompts", params={"user_id": "u"}).json()["items"]
        assert [p["title"] for p in listed] == ["old"]
        # Reading one prompt right after writing it goes to the primary.
        assert client.get(f"/v1/prompts/{prompt_id}").json()["title"] == "new"
    # The replica file was only read.
    with ledger(replica_settings) as db, db.read_session() as session:
        assert [p.title for p in PromptRepository(session).list_for_user("u")] == ["old"]


def test_reads_go_to_the_primary_until_the_replica_has_a_file(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> None:
    replica = ReplicaConfig.model_validate(
        {
            "name": "edge-1",
            "path": str(tmp_path / "not-yet" / "edge-1.db"),
            "sync_url": "https://primary.example.com",
            "protocol": "libsql",
        }
    )
    settings = api_settings(
        db_path, redis_url, replicas=[replica], replica_host="h", read_replica="edge-1"
    )
    with client_for(settings, headers=AUTH) as client:
        client.post("/v1/prompts", json={"title": "new", "content": "c", "user_id": "u"})
        listed = client.get("/v1/prompts", params={"user_id": "u"}).json()["items"]
    assert [p["title"] for p in listed] == ["new"]
    assert not replica.path.exists()


def test_queue_depth_covers_each_replica_hosts_queue(
    replica_client: TestClient, redis_url: str
) -> None:
    replica_client.post("/v1/jobs/replica-sync", json={"replica": "far"})

    metrics = replica_client.get("/metrics/ledger").text

    assert 'autoforge_queue_depth{queue="replicas.other-host"} 1.0' in metrics
    assert 'autoforge_queue_depth{queue="replicas.this-host"} 0.0' in metrics


def test_a_job_without_a_route_does_not_hold_back_the_others_of_its_batch(
    settings_with_replicas: Settings, redis_url: str
) -> None:
    kinds = kind_registry()
    publisher = JobPublisher(
        create_celery(settings_with_replicas, kinds), kinds, settings_with_replicas
    )
    unroutable = Job("replica-sync", {})  # no replica named: no host, so no queue
    routable = Job("replica-sync", {"replica": "edge-1"})
    canary = Job("canary", {})

    published = publisher.publish_many([unroutable, routable, canary])

    assert published == [routable.id, canary.id]
    assert llen(redis_url, "replicas.this-host") == 1
    assert llen(redis_url, "canary") == 1
