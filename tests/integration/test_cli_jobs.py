"""``autoforge enqueue`` and ``autoforge jobs ...`` against a real API server process.

The API runs as ``uvicorn --factory api.main:build`` on a free port, configured only
through its environment, on a migrated libSQL file and the session's real Redis. The CLI
runs as a separate process too, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "afk_cli-test-key-6e2f"
START_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parents[2]

# Variables of the developer's shell that would change what the processes do.
_CLEARED = (
    "APP_ENV",
    "DATABASE_URL",
    "TURSO_DATABASE_URL",
    "TURSO_AUTH_TOKEN",
    "TURSO_STAGING_DATABASE_URL",
    "TURSO_STAGING_AUTH_TOKEN",
    "REDIS_URL",
    "API_URL",
    "AUTOFORGE_API_KEYS",
    "AUTOFORGE_API_KEY",
)


def _environment(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def api_server(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> Iterator[ApiServer]:
    """A uvicorn process serving the API; stopped (SIGTERM, lifespan shutdown) afterwards."""
    port = _free_port()
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:build", "--port", str(port)],
        cwd=tmp_path,
        env=_environment(
            DATABASE_URL=str(db_path),
            REDIS_URL=redis_url,
            AUTOFORGE_API_KEYS=KEY,
            LOG_LEVEL="DEBUG",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the API exited ({process.returncode}):\n{_read(tmp_path)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the API did not answer /healthz:\n{_read(tmp_path)}")
            time.sleep(0.1)
        yield ApiServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert KEY not in _read(tmp_path), "the API logged its key"


def _read(tmp_path: Path) -> str:
    return (tmp_path / "api.log").read_text(errors="replace")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def _autoforge(cwd: Path, url: str, *args: str, key: str = KEY) -> Result:
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env=_environment(API_URL=url, AUTOFORGE_API_KEY=key),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    assert KEY not in result.out + result.err, "the CLI printed the key"
    return result


def test_enqueue_show_list_cancel(api_server: ApiServer, tmp_path: Path) -> None:
    enqueued = _autoforge(
        tmp_path, api_server.url, "enqueue", "canary", "--body", '{"sleep_ms":0}', "--json"
    )
    assert enqueued.code == 0, enqueued.err
    job = enqueued.json()
    assert job["kind"] == "canary"
    assert job["status"] == "queued"
    assert job["arguments"] == {"sleep_ms": 0, "fail_times": 0}

    shown = _autoforge(tmp_path, api_server.url, "jobs", "show", job["id"])
    assert shown.code == 0, shown.err
    assert job["id"] in shown.out
    assert "status:" in shown.out
    assert "queued" in shown.out

    listed = _autoforge(tmp_path, api_server.url, "jobs", "list", "--json")
    assert listed.code == 0, listed.err
    assert [item["id"] for item in listed.json()["items"]] == [job["id"]]

    cancelled = _autoforge(tmp_path, api_server.url, "jobs", "cancel", job["id"])
    assert cancelled.code == 0, cancelled.err
    assert f"job {job['id']} cancelled" in cancelled.out

    shown_json = _autoforge(tmp_path, api_server.url, "jobs", "show", job["id"], "--json")
    assert shown_json.json()["status"] == "cancelled"

    again = _autoforge(tmp_path, api_server.url, "jobs", "cancel", job["id"])
    assert again.code == 1
    assert "HTTP 409" in again.err
    assert "already cancelled" in again.err


def test_enqueue_from_a_file_with_an_idempotency_key(api_server: ApiServer, tmp_path: Path) -> None:
    body = tmp_path / "canary.json"
    body.write_text('{"sleep_ms": 5, "fail_times": 1}')

    first = _autoforge(
        tmp_path, api_server.url, "enqueue", "canary", "--body", f"@{body}",
        "--idempotency-key", "cli-1",
    )  # fmt: skip
    replay = _autoforge(
        tmp_path, api_server.url, "enqueue", "canary", "--body", f"@{body}",
        "--idempotency-key", "cli-1", "--json",
    )  # fmt: skip

    assert first.code == 0, first.err
    assert "accepted" in first.out
    assert replay.code == 0, replay.err
    assert replay.json()["id"] in first.out
    assert replay.json()["arguments"] == {"sleep_ms": 5, "fail_times": 1}


def test_list_table_filters_and_pages(api_server: ApiServer, tmp_path: Path) -> None:
    ids = [
        _autoforge(tmp_path, api_server.url, "enqueue", "canary", "--json").json()["id"]
        for _ in range(3)
    ]

    table = _autoforge(tmp_path, api_server.url, "jobs", "list", "--kind", "canary")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATUS", "ATTEMPTS", "CREATED"]
    assert [line.split()[0] for line in lines[1:4]] == list(reversed(ids))

    first = _autoforge(tmp_path, api_server.url, "jobs", "list", "--limit", "2", "--json")
    cursor = first.json()["next_cursor"]
    rest = _autoforge(
        tmp_path, api_server.url, "jobs", "list", "--limit", "2", "--cursor", cursor, "--json"
    )
    paged = [item["id"] for item in first.json()["items"] + rest.json()["items"]]
    assert paged == list(reversed(ids))

    empty = _autoforge(tmp_path, api_server.url, "jobs", "list", "--status", "failed")
    assert empty.code == 0, empty.err
    assert empty.out.strip() == "no jobs"


def test_retry_of_a_queued_job_is_refused(api_server: ApiServer, tmp_path: Path) -> None:
    job_id = _autoforge(tmp_path, api_server.url, "enqueue", "canary", "--json").json()["id"]

    result = _autoforge(tmp_path, api_server.url, "jobs", "retry", job_id, "--json")

    assert result.code == 1
    assert "HTTP 409" in result.err
    assert json.loads(result.out)["error"]["code"] == "job_state_conflict"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enqueue", "teleport"), "HTTP 404"),
        (("enqueue", "embedding"), "HTTP 501"),
        (("enqueue", "canary", "--body", '{"sleep_ms": -1}'), "sleep_ms"),
        (("jobs", "show", "no-such-job"), "HTTP 404"),
        (("jobs", "list", "--status", "sleeping"), "status"),
    ],
)
def test_api_errors_print_the_message_and_exit_1(
    api_server: ApiServer, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _autoforge(tmp_path, api_server.url, *args)

    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err


def test_wrong_key_is_reported(api_server: ApiServer, tmp_path: Path) -> None:
    result = _autoforge(tmp_path, api_server.url, "jobs", "list", key="afk_wrong-key")

    assert result.code == 1
    assert "HTTP 403" in result.err
    assert "afk_wrong-key" not in result.out + result.err


@pytest.mark.parametrize(
    "body", ["{not json", "[1, 2]", "@missing.json", "@"], ids=["bad", "array", "nofile", "at"]
)
def test_bad_body_exits_2_naming_the_option(tmp_path: Path, body: str) -> None:
    # No server needed: the body is checked before anything is sent.
    result = _autoforge(tmp_path, "http://127.0.0.1:9", "enqueue", "canary", "--body", body)

    assert result.code == 2
    assert "--body" in result.err
    assert "Traceback" not in result.err


def test_api_down_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"

    for args in (("enqueue", "canary"), ("jobs", "list"), ("jobs", "show", "x")):
        result = _autoforge(tmp_path, url, *args)

        assert result.code == 1
        assert result.err.strip().splitlines() == [
            line for line in result.err.strip().splitlines() if line.startswith("error:")
        ]
        assert len(result.err.strip().splitlines()) == 1
        assert f"cannot reach the API at {url}" in result.err
        assert result.out == ""


def test_missing_key_is_a_configuration_error(tmp_path: Path) -> None:
    result = _autoforge(tmp_path, "http://127.0.0.1:9", "jobs", "list", key="")

    assert result.code == 2
    assert "AUTOFORGE_API_KEY" in result.err
