"""Replica declarations, routing to the host that holds a file, beat entries, and the
classification of sync failures (no services: the sync itself is tested in
tests/integration/test_replica_sync.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ConfigurationError
from core.settings import ReplicaConfig, Settings, load_settings
from core.settings_view import settings_view
from devstack.supervisor import UpOptions, worker_queues
from jobs.queues import ENQUEUE_PERIODIC_TASK
from tasks.registry import kind_registry
from tasks.replica_sync.errors import PrimaryMissing, SyncFailed, SyncRefused, SyncUnavailable
from tasks.replica_sync.kind import ReplicaSyncArguments
from tasks.replica_sync.routing import host_queues, periodic, route
from tasks.replica_sync.sync import classify
from workers.beat import beat_schedule
from workers.routing import task_queues

TOKEN = "tok-SECRET-41c7"


def _settings(
    monkeypatch: pytest.MonkeyPatch, replicas: list[dict[str, Any]], **env: str
) -> Settings:
    monkeypatch.setenv("REPLICAS", json.dumps(replicas))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None, database_url="x.db")


def _replica(name: str = "edge-1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "path": f"/srv/{name}.db",
        "sync_url": "https://db.example.com",
        "auth_token": TOKEN,
        "protocol": "turso-sync",
        "interval_s": 30,
        **extra,
    }


def test_replicas_are_read_from_json_and_their_tokens_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(monkeypatch, [_replica(), _replica("edge-2", protocol="libsql")])

    assert [r.name for r in settings.replicas] == ["edge-1", "edge-2"]
    assert TOKEN in settings.secrets()
    assert TOKEN not in repr(settings.replicas)
    shown = json.dumps([line.value for line in settings_view(settings)])
    assert TOKEN not in shown
    assert '"auth_token": "***"' in shown


def test_a_libsql_url_syncs_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, [_replica(sync_url="libsql://db-org.turso.io")])
    assert settings.replicas[0].sync_url == "https://db-org.turso.io"


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ([_replica(), _replica()], "replica names must be unique"),
        ([_replica(protocol="rsync")], "REPLICAS"),
        ([_replica(sync_url="ftp://x")], "REPLICAS"),
        ([_replica(interval_s=0)], "REPLICAS"),
    ],
)
def test_bad_replicas_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, replicas: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        _settings(monkeypatch, replicas)
    assert TOKEN not in str(raised.value)


def test_a_job_goes_to_the_queue_of_the_host_holding_its_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(
        monkeypatch,
        [_replica(), _replica("far", host="worker-b")],
        REPLICA_HOST="worker-a",
    )

    assert route({"replica": "edge-1"}, settings) == "replicas.worker-a"
    assert route({"replica": "far"}, settings) == "replicas.worker-b"
    assert route({"all": True}, settings) == "replicas.worker-a"
    assert route({"all": True, "host": "worker-b"}, settings) == "replicas.worker-b"
    # Each host's workers consume their own queue: on by default, without -Q.
    assert host_queues(settings) == ("replicas.worker-a",)
    names = [queue.name for queue in task_queues(kind_registry(), settings)]
    assert "replicas.worker-a" in names
    assert "replicas.worker-b" not in names


def test_a_host_without_replicas_consumes_no_replica_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(monkeypatch, [_replica(host="elsewhere")], REPLICA_HOST="here")
    assert host_queues(settings) == ()


def test_beat_syncs_each_replica_on_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, [_replica(), _replica("edge-2", interval_s=5)])

    entries = beat_schedule(settings, kind_registry())

    edge2 = entries["replica-sync-edge-2"]
    assert edge2["task"] == ENQUEUE_PERIODIC_TASK
    assert edge2["schedule"].total_seconds() == 5
    assert edge2["args"][0] == "replica-sync"
    ReplicaSyncArguments.model_validate(edge2["args"][1])
    assert edge2["options"] == {"expires": 5}
    assert [p.name for p in periodic(settings)] == ["replica-sync-edge-1", "replica-sync-edge-2"]


@pytest.mark.parametrize(
    "body",
    [{}, {"replica": "a", "all": True}, {"replica": "a", "host": "h"}, {"all": "yes"}],
)
def test_a_job_names_one_replica_or_all(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReplicaSyncArguments.model_validate(body)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("remote server returned an error: status=401, body=unauthorized", SyncRefused),
        ("failed to pull db export: status=403 Forbidden", SyncRefused),
        ("failed to pull db export: status=404 Not Found", PrimaryMissing),
        ("remote server returned an error: status=502, body=", SyncUnavailable),
        ("status=429 Too Many Requests", SyncUnavailable),
        ("network error: [Errno 111] Connection refused", SyncUnavailable),
        ("database is locked", SyncUnavailable),
        ("malformed database schema", SyncFailed),
    ],
)
def test_sync_failures_are_transient_or_permanent(message: str, error: type[Exception]) -> None:
    replica = ReplicaConfig.model_validate(_replica(path=str(Path("/srv/x.db"))))
    assert isinstance(classify(replica, message), error)


@pytest.mark.parametrize(
    ("replicas", "read_replica", "message"),
    [
        ([_replica(protocol="libsql")], "nope", "READ_REPLICA names no replica"),
        ([_replica()], "edge-1", "is a turso-sync replica"),
        ([_replica(protocol="libsql", host="elsewhere")], "edge-1", "not on this one"),
    ],
)
def test_read_replica_must_be_a_local_libsql_replica(
    monkeypatch: pytest.MonkeyPatch,
    replicas: list[dict[str, Any]],
    read_replica: str,
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _settings(monkeypatch, replicas, READ_REPLICA=read_replica)


def test_a_local_libsql_replica_can_serve_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, [_replica(protocol="libsql")], READ_REPLICA="edge-1")
    assert settings.read_replica == "edge-1"


def test_autoforge_up_runs_its_worker_on_this_hosts_replica_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(monkeypatch, [_replica()], REPLICA_HOST="laptop")

    queues = worker_queues(settings, UpOptions(), kind_registry())

    assert "replicas.laptop" in queues
    assert worker_queues(settings, UpOptions(queues=("replicas.laptop",)), kind_registry()) == (
        "replicas.laptop",
    )
    with pytest.raises(ConfigurationError, match="unknown queue"):
        worker_queues(settings, UpOptions(queues=("replicas.elsewhere",)), kind_registry())
