"""A real worker, started without ``-Q``, consumes its host's replica queue by itself and
syncs a replica from a real primary (Turso's sync server)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import turso.sync

from domain.jobs import JobStatus
from jobs.outbox import enqueue
from tests.support.processes import Pipeline, open_pipeline
from tests.support.turso_server import TursoPrimary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "e2e-replica-host"


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str, turso_primary: TursoPrimary) -> Iterator[Pipeline]:
    replica = {
        "name": "edge-1",
        "path": str(tmp_path / "replicas" / "edge-1.db"),
        "sync_url": turso_primary.url,
        "protocol": "turso-sync",
        "interval_s": 3600,
    }
    with open_pipeline(tmp_path, redis_url, replicas=[replica], replica_host=HOST) as pipeline:
        yield pipeline


def _rows(path: Path) -> list[str]:
    connection = turso.sync.connect(str(path), "http://127.0.0.1:9")
    try:
        return [row[0] for row in connection.execute("SELECT body FROM notes ORDER BY id")]
    finally:
        connection.close()
        del connection
        gc.collect()  # pyturso lets go of the file only when the object is freed


def test_a_worker_syncs_its_hosts_replica_and_records_the_lag(
    pipeline: Pipeline, turso_primary: TursoPrimary
) -> None:
    pipeline.start_worker(queues=None, concurrency=1)
    replica = pipeline.settings.replicas[0]

    first = enqueue(pipeline.runtime, "replica-sync", {"replica": "edge-1"}).job.id
    pipeline.wait_for_job(first, JobStatus.SUCCEEDED)
    turso_primary.execute("INSERT INTO notes (body) VALUES ('from the primary')")
    second = enqueue(pipeline.runtime, "replica-sync", {"replica": "edge-1"}).job.id
    done = pipeline.wait_for_job(second, JobStatus.SUCCEEDED)

    assert _rows(replica.path) == ["first", "from the primary"]
    assert done.result is not None
    (synced,) = done.result["replicas"]
    assert (synced["status"], synced["changed"]) == ("succeeded", True)
    assert synced["lag_s"] > 0
    assert pipeline.queue_length(f"replicas.{HOST}") == 0
