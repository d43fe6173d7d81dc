"""``autoforge config show`` as a user runs it: every variable, secrets hidden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Every secret value holds "xyzzy": no output may show it.
SECRETS = {
    "REDIS_URL": "redis://default:redis-xyzzy-1@cache.internal:6380/2",
    "OPENAI_BASE_URL": "https://proxy-user:proxy-xyzzy-2@llm.internal/v1",
    "OPENAI_API_KEY": "sk-xyzzy-3",
    "AUTOFORGE_API_KEYS": "afk_xyzzy-4,afk_xyzzy-5",
    "FLOWER_BASIC_AUTH": "admin:xyzzy-6",
    "BACKUP_ENCRYPTION_KEY": "eHl6enkteHl6enkteHl6enkteHl6enkteHl6enktZW4=",
    "DATABASE_URL": "data/x.db",
    "REPLICAS": '[{"name": "edge-1", "path": "r.db", "sync_url": "https://u:xyzzy-7@primary", '
    '"auth_token": "xyzzy-8"}]',
}


def _autoforge(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(PYTHONPATH=str(REPO), **SECRETS)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_variable_with_its_value_and_source_secrets_hidden(tmp_path: Path) -> None:
    result = _autoforge(
        tmp_path, "--api-url", "http://api.internal:8000", "--key", "xyzzy-9", "config", "show"
    )

    assert result.returncode == 0, result.stderr
    assert "xyzzy" not in result.stdout + result.stderr
    rows = {
        line.split()[0]: line.split()[1:]
        for line in result.stdout.splitlines()[1:]
        if line and not line.startswith("database in use:")
    }
    assert result.stdout.splitlines()[0].split() == ["VARIABLE", "VALUE", "SOURCE"]
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    assert rows["REDIS_URL"] == ["redis://default:***@cache.internal:6380/2", "set"]
    assert rows["OPENAI_BASE_URL"] == ["https://proxy-user:***@llm.internal/v1", "set"]
    assert rows["OPENAI_API_KEY"] == ["***", "set"]
    assert rows["AUTOFORGE_API_KEYS"] == ["***", "set"]
    assert rows["BACKUP_ENCRYPTION_KEY"] == ["***", "set"]
    # The global options count as set.
    assert rows["API_URL"] == ["http://api.internal:8000", "set"]
    assert rows["AUTOFORGE_API_KEY"] == ["***", "set"]
    assert rows["LOG_FORMAT"] == ["text", "default"]
    assert rows["TURSO_AUTH_TOKEN"] == ["-", "default"]
    assert result.stdout.rstrip().endswith(f"database in use: libSQL file {tmp_path}/data/x.db")


def test_json(tmp_path: Path) -> None:
    result = _autoforge(tmp_path, "config", "show", "--json")

    assert result.returncode == 0, result.stderr
    assert "xyzzy" not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["database"] == f"libSQL file {tmp_path}/data/x.db"
    settings = shown["settings"]
    assert set(settings) == {name.upper() for name in Settings.model_fields}
    assert settings["REDIS_URL"] == {
        "value": "redis://default:***@cache.internal:6380/2",
        "source": "set",
    }
    assert settings["FLOWER_BASIC_AUTH"] == {"value": "***", "source": "set"}
    assert settings["JOB_TIME_LIMITS_S"]["value"]["canary"] == 120
    assert settings["ALLOW_ECHO_PROVIDER"] == {"value": None, "source": "default"}
