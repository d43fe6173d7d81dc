"""Secrets never reach output: logs, reprs, exception messages, SQLAlchemy echo, the CLI.

A real local HTTP server stands in for a libSQL server: it records what the SDK sends
and answers with an error, so every code path that reports a failure is exercised.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import AutoforgeError
from core.logging import configure_logging
from core.settings import load_settings
from db.database import Database
from db.errors import DatabaseUnavailable, QueryError
from tests.support.leaky_celery_app import LEAK_PREFIX
from tests.support.processes import CeleryProcess, open_pipeline
from tests.support.redis import REDIS_PASSWORD

pytestmark = pytest.mark.integration

TOKEN = "tok-41d8-SECRET-must-never-print"
API_KEY = "afk_test-api-key-SECRET-0x5e"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[str]:
    """URL of a refusing HTTP server in another process; requests go to ``seen``."""
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "support" / "refusing_http_server.py"),
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


def _seen(tmp_path: Path) -> list[dict[str, str]]:
    log = tmp_path / "requests.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _remote_env(url: str) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "TURSO_DATABASE_URL": url,
        "TURSO_AUTH_TOKEN": TOKEN,
        # Not reached by these commands, but required outside local.
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOG_LEVEL": "DEBUG",
        "DB_ECHO": "true",
        # A read retries the refusing server for this long (the default is 5 s): many
        # tries, each logged, in a fraction of the time.
        "DB_BUSY_TIMEOUT_MS": "500",
    }


def test_token_goes_in_the_header_and_errors_do_not_quote_it(
    fake_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key, value in _remote_env(fake_server).items():
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)
    configure_logging(settings)
    caplog.set_level(logging.DEBUG)
    db = Database(settings)
    with pytest.raises(AutoforgeError) as caught, db.read_session() as session:
        session.connection().exec_driver_sql("SELECT 1")
    assert isinstance(caught.value, DatabaseUnavailable | QueryError)
    seen = _seen(tmp_path)
    assert seen, "the SDK never reached the server"
    for request in seen:
        assert TOKEN not in request["path"]
        assert request["authorization"] == f"Bearer {TOKEN}"
    for text in (str(caught.value), repr(caught.value), repr(db), repr(settings), caplog.text):
        assert TOKEN not in text
    db.dispose()


@pytest.mark.parametrize(
    "command",
    [
        ["config", "show"],
        ["config", "show", "--json"],
        ["db", "current"],
        ["db", "upgrade"],
        ["db", "explain", "SELECT 1"],
        ["up"],
    ],
)
def test_cli_never_prints_the_token(fake_server: str, tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURSO_", "DATABASE_"))}
    env.update(_remote_env(fake_server))
    if command == ["up"]:
        # `up` checks its own secrets and ports first; give it what production requires.
        env.update(
            AUTOFORGE_API_KEYS=API_KEY,
            FLOWER_BASIC_AUTH=f"admin:{API_KEY}",
            API_PORT=str(_free_port()),
            FLOWER_PORT=str(_free_port()),
        )
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert TOKEN not in output
    assert API_KEY not in output
    if command[0] == "config":
        assert result.returncode == 0, output
        assert "***" in output
    else:
        # The server refuses: a clear one-line error, no traceback.
        assert result.returncode == 1, output
        assert "error: DatabaseUnavailable" in output or "error: QueryError" in output
        assert "Traceback" not in output


def test_redacting_formatter_scrubs_third_party_messages(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    monkeypatch.setenv("TURSO_STAGING_DATABASE_URL", "libsql://stg.example.io")
    monkeypatch.setenv("TURSO_STAGING_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    configure_logging(load_settings(_env_file=None))
    logging.getLogger("some.library").error("connecting to wss://stg.example.io?token=%s", TOKEN)
    err = capsys.readouterr().err
    assert "connecting to wss://stg.example.io?token=***" in err
    assert TOKEN not in err


# --- Celery's own processes -----------------------------------------------------------------

OPENAI_KEY = "sk-SECRET-openai-3c9d2e"
BACKUP_KEY = base64.b64encode(b"backup-key-SECRET-32-bytes-long!").decode()
FLOWER_LOGIN = "admin:flower-SECRET-pw-41"


@pytest.mark.slow
@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_worker_and_beat_keep_the_scrubbing_log_handler(
    tmp_path: Path, password_redis_url: str, role: str
) -> None:
    secrets = [REDIS_PASSWORD, API_KEY, OPENAI_KEY, BACKUP_KEY, FLOWER_LOGIN]
    with open_pipeline(
        tmp_path,
        password_redis_url,
        autoforge_api_keys=API_KEY,
        openai_api_key=OPENAI_KEY,
        backup_encryption_key=BACKUP_KEY,
        flower_basic_auth=FLOWER_LOGIN,
    ) as pipeline:
        assert set(pipeline.settings.secrets()) >= set(secrets)
        extra = ["-c", "1", "-Q", "maintenance"] if role == "worker" else []
        process = CeleryProcess(
            role,
            [
                sys.executable, "-m", "celery", "-A", "tests.support.leaky_celery_app",
                role, "--loglevel", "INFO", *extra,
            ],
            env=pipeline.environment(),
            cwd=tmp_path,
            log_path=tmp_path / "logs" / f"{role}.log",
        )  # fmt: skip
        pipeline.processes.append(process)

        line = process.wait_for_log(
            rf"(?m)^.*{re.escape(LEAK_PREFIX)}.*$", describe=pipeline.describe
        ).group(0)

        # Our handler's format, the secrets scrubbed (Celery's would print them as they are).
        assert re.match(r"\d{4}-\d\d-\d\d [\d:,]+ WARNING some\.library: ", line), line
        assert line.endswith(f"{LEAK_PREFIX} {' '.join(['***'] * len(secrets))}"), line
        output = process.log_text()
        for secret in secrets:
            assert secret not in output, f"{secret!r} printed by {role}"


@pytest.mark.slow
@pytest.mark.parametrize("with_defaults", [False, True])
def test_a_worker_reports_its_settings_without_the_redis_password(
    tmp_path: Path, password_redis_url: str, with_defaults: bool
) -> None:
    with open_pipeline(tmp_path, password_redis_url) as pipeline:
        worker = pipeline.start_worker(("maintenance",), concurrency=1)
        # RedBeat finds the password in its options (the server refuses clients without).
        pipeline.start_beat(lock_holder=True)

        # What Flower's Config tab shows: Celery's `inspect conf`, masked by Celery. One
        # worker runs, so one reply is all there is: without a limit, the broadcast would
        # wait out its whole timeout for more.
        replies = pipeline.app.control.inspect(timeout=10, limit=1).conf(
            with_defaults=with_defaults
        )

        assert replies, pipeline.describe()
        [(node, reported)] = replies.items()
        assert node in worker.log_text()
        assert reported["redbeat_redis_url"].startswith("redis://127.0.0.1:")
        assert REDIS_PASSWORD not in json.dumps(reported), reported
