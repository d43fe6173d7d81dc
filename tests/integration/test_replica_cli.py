"""``autoforge replica sync`` and ``autoforge replica list`` as a user runs them, against a
real primary (Turso's sync server) and one that is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from tests.support.turso_server import TursoPrimary, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cli-replica-token-SECRET-0d1e"


def _autoforge(
    tmp_path: Path, db_path: Path, replicas: list[dict[str, object]], *args: str
) -> subprocess.CompletedProcess[str]:
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(
        PYTHONPATH=str(REPO),
        DATABASE_URL=str(db_path),
        REPLICAS=json.dumps(replicas),
        REPLICA_HOST="cli-host",
        REPLICA_SYNC_TIMEOUT_S="20",
    )
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _replica(tmp_path: Path, name: str, url: str) -> dict[str, object]:
    return {
        "name": name,
        "path": str(tmp_path / f"{name}.db"),
        "sync_url": url,
        "auth_token": TOKEN,
        "protocol": "turso-sync",
    }


def test_sync_then_list_reports_each_replica_and_fails_for_a_down_primary(
    migrated: Settings, db_path: Path, tmp_path: Path, turso_primary: TursoPrimary
) -> None:
    replicas = [
        _replica(tmp_path, "edge-1", turso_primary.url),
        _replica(tmp_path, "down", f"http://127.0.0.1:{free_port()}"),
    ]

    synced = _autoforge(tmp_path, db_path, replicas, "replica", "sync", "edge-1", "--json")
    assert synced.returncode == 0, synced.stderr
    (item,) = json.loads(synced.stdout)["items"]
    assert (item["replica"], item["status"], item["changed"]) == ("edge-1", "succeeded", True)

    every = _autoforge(tmp_path, db_path, replicas, "replica", "sync")
    assert every.returncode == 1
    assert "down: failed (replica 'down': " in every.stdout
    assert "error: a replica failed to sync" in every.stderr
    assert "Traceback" not in every.stderr

    listed = _autoforge(tmp_path, db_path, replicas, "replica", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    edge, down = json.loads(listed.stdout)["items"]
    assert edge["syncs"] == {"succeeded": 2, "skipped": 0, "failed": 0}
    assert edge["lag_s"] is not None
    assert down["last_success_at"] is None
    assert "refused" in down["last_error"].lower()
    human = _autoforge(tmp_path, db_path, replicas, "replica", "list")
    assert "down  turso-sync  host cli-host  never synced  STALE  last error:" in human.stdout
    for output in (synced, every, listed, human):
        assert TOKEN not in output.stdout + output.stderr


def test_an_unknown_replica_is_an_error_naming_the_host(
    migrated: Settings, db_path: Path, tmp_path: Path
) -> None:
    result = _autoforge(tmp_path, db_path, [], "replica", "sync", "nope")

    assert result.returncode == 1
    assert result.stderr.strip() == "error: no replica 'nope' is declared on this host (cli-host)"
