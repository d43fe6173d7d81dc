"""``autoforge enqueue`` and ``autoforge jobs ...`` against a real API server process.

The API runs as ``uvicorn --factory api.main:build`` on a free port, configured only
through its environment, on a migrated libSQL file and the session's real Redis. The CLI
runs as a separate process too, exactly as a user runs it. Waiting for jobs to end
(``jobs wait``, ``enqueue --wait``) also needs a real Celery worker on the same database
and Redis (:class:`tests.support.processes.Pipeline`).

Odd input (deep or non-finite JSON, files that are not UTF-8, headers HTTP cannot carry,
empty ids) must end in one ``error:`` line on stderr naming the argument, exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from domain.jobs import JobStatus
from tests.support.api_server import ApiServer, free_port, run_api_server
from tests.support.processes import Pipeline, open_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "afk_cli-test-key-6e2f"
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


@pytest.fixture
def api_server(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> Iterator[ApiServer]:
    """A uvicorn process serving the API; stopped (SIGTERM, lifespan shutdown) afterwards."""
    env = _environment(
        DATABASE_URL=str(db_path), REDIS_URL=redis_url, AUTOFORGE_API_KEYS=KEY, LOG_LEVEL="DEBUG"
    )
    with run_api_server(tmp_path, env, tmp_path / "api.log") as server:
        yield server
    assert KEY not in server.log_text(), "the API logged its key"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def _autoforge(
    cwd: Path, url: str, *args: str, key: str = KEY, env: Mapping[str, str] | None = None
) -> Result:
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env=_environment(**{"API_URL": url, "AUTOFORGE_API_KEY": key, **(env or {})}),
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
        (("enqueue", "no-such-kind"), "HTTP 404"),
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
    url = f"http://127.0.0.1:{free_port()}"

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


def test_version() -> None:
    result = _autoforge(REPO, "http://127.0.0.1:9", "--version")

    assert result.code == 0, result.err
    assert result.out == f"autoforge {version('autoforge-jobs')}\n"


def test_global_flags_override_the_settings_and_the_key_is_never_printed(
    api_server: ApiServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    flags = ("--api-url", api_server.url, "--key", KEY)
    # The environment names a dead API and a wrong key: the flags win.
    env = {"API_URL": dead, "AUTOFORGE_API_KEY": "afk_not-this-one"}

    enqueued = _autoforge(tmp_path, dead, *flags, "enqueue", "canary", "--json", env=env)
    wrong_key = _autoforge(tmp_path, dead, "--api-url", api_server.url, "--key", "afk_wrong",
                           "jobs", "list")  # fmt: skip
    env_only = _autoforge(tmp_path, dead, "jobs", "list", env=env)

    assert enqueued.code == 0, enqueued.err
    assert enqueued.json()["kind"] == "canary"
    assert wrong_key.code == 1
    assert "HTTP 403" in wrong_key.err
    assert "afk_wrong" not in wrong_key.out + wrong_key.err
    assert env_only.code == 1
    assert f"cannot reach the API at {dead}" in env_only.err
    # _autoforge also checks that KEY is in no output.


# --- waiting for a job's end, with a real worker -----------------------------------------


@dataclass(frozen=True)
class System:
    """A worker and the API on one database and Redis."""

    pipeline: Pipeline
    api: ApiServer
    cwd: Path

    def autoforge(self, *args: str) -> Result:
        return _autoforge(self.cwd, self.api.url, *args)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=self.cwd,
            env=_environment(API_URL=self.api.url, AUTOFORGE_API_KEY=KEY),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def system(tmp_path: Path, redis_url: str) -> Iterator[System]:
    # Two attempts per canary: a canary told to fail three times ends failed.
    with open_pipeline(tmp_path / "system", redis_url, job_max_attempts={"canary": 2}) as pipeline:
        pipeline.start_worker()
        env = {**pipeline.environment(), "AUTOFORGE_API_KEYS": KEY}
        with run_api_server(pipeline.workdir, env, pipeline.workdir / "logs" / "api.log") as api:
            yield System(pipeline, api, tmp_path)


def _final_exit(process: subprocess.Popen[str]) -> Result:
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the CLI did not end:\n{out}\n{err}")
    assert KEY not in out + err
    return Result(process.returncode, out, err)


def test_enqueue_wait_exits_with_the_jobs_end_state(system: System) -> None:
    succeeded = system.autoforge(
        "enqueue", "canary", "--body", '{"fail_times": 1}', "--wait", "--json"
    )
    failed = system.autoforge("enqueue", "canary", "--body", '{"fail_times": 3}', "--wait")

    assert succeeded.code == 0, succeeded.err
    job = succeeded.json()
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert job["result"] == {"slept_ms": 0, "attempts": 2}
    assert failed.code == 3, failed.err
    lines = failed.out.splitlines()
    assert lines[0].startswith("job ")
    assert lines[0].endswith(" accepted (canary, queued)")
    assert "status:          failed" in lines
    assert "error:           CanaryFailure: canary failing on purpose (attempt 2)" in lines
    assert failed.err == ""


def test_jobs_wait_follows_a_running_job_to_its_end(system: System) -> None:
    slow = system.autoforge("enqueue", "canary", "--body", '{"sleep_ms": 60000}', "--json")
    job_id = slow.json()["id"]
    done = system.autoforge("enqueue", "canary", "--json").json()["id"]

    timed_out = system.autoforge("jobs", "wait", job_id, "--timeout", "1", "--json")
    waiting = system.start("jobs", "wait", job_id)
    system.pipeline.wait_for_job(job_id, JobStatus.RUNNING, timeout=30)
    cancelled = system.autoforge("jobs", "cancel", job_id)
    ended = _final_exit(waiting)
    finished = system.autoforge("jobs", "wait", done)

    assert timed_out.code == 5, timed_out.err
    assert timed_out.json()["status"] in ("queued", "running")
    assert timed_out.err.startswith(f"error: job {job_id} is still ")
    assert timed_out.err.endswith(" after 1 s\n")
    assert cancelled.code == 0, cancelled.err
    assert ended.code == 4, ended.err
    assert "status:          cancelled" in ended.out.splitlines()
    assert finished.code == 0, finished.err
    assert "status:          succeeded" in finished.out.splitlines()


def test_waiting_for_a_job_that_does_not_exist_fails(system: System) -> None:
    result = system.autoforge("jobs", "wait", "no-such-job", "--timeout", "5")

    assert result.code == 1
    assert result.err.strip() == "error: HTTP 404: Job no-such-job does not exist."


# --- odd input: one line naming the argument, exit 2 ---------------------------------------


DEEP = b"[" * 200 + b"]" * 200
LATIN1 = '{"caf\u00e9": 1}'.encode("latin-1")


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return f"@{path}"


@pytest.mark.parametrize(
    ("make_args", "argument"),
    [
        (lambda d: ("enqueue", "canary", "--body", "[" * 5000 + "]" * 5000), "--body"),
        (lambda d: ("enqueue", "canary", "--body", _write(d / "deep.json", DEEP)), "--body"),
        (lambda d: ("enqueue", "canary", "--body", '{"sleep_ms": NaN}'), "--body"),
        (lambda d: ("enqueue", "canary", "--body", '{"sleep_ms": 1e999}'), "--body"),
        (lambda d: ("enqueue", "canary", "--body", '{"sleep_ms": ' + "7" * 5000 + "}"), "--body"),
        (lambda d: ("enqueue", "canary", "--body", _write(d / "latin1.json", LATIN1)), "--body"),
        (lambda d: ("enqueue", "canary", "--body", os.fsdecode(b'{"a": "\xff"}')), "--body"),
        (lambda d: ("enqueue", "canary", "--idempotency-key", "clé-1"), "--idempotency-key"),
        (lambda d: ("enqueue", "canary", "--idempotency-key", "line\nbreak"), "--idempotency-key"),
        (lambda d: ("enqueue", "canary", "--idempotency-key", ""), "--idempotency-key"),
        (lambda d: ("enqueue", "canary", "--idempotency-key", "k" * 256), "--idempotency-key"),
        (lambda d: ("enqueue", "canary", "--timeout", "5"), "--timeout"),
        (lambda d: ("enqueue", ""), "KIND"),
        (lambda d: ("jobs", "show", ""), "ID"),
        (lambda d: ("jobs", "wait", " "), "ID"),
        (lambda d: ("jobs", "cancel", os.fsdecode(b"\xff\xfe")), "ID"),
        (lambda d: ("jobs", "wait", "x", "--timeout", "-1"), "--timeout"),
        (lambda d: ("jobs", "list", "--limit", "many"), "--limit"),
        (lambda d: ("--api-url", "http://[::1", "jobs", "list"), "--api-url"),
        (lambda d: ("--api-url", "ftp://example.org", "jobs", "list"), "--api-url"),
        (lambda d: ("--key", "", "jobs", "list"), "--key"),
        (lambda d: ("--key", "kéy-SECRET", "jobs", "list"), "--key"),
    ],
    ids=[
        "deep-inline", "deep-file", "nan", "huge-float", "5000-digits", "latin1-file",
        "not-utf8-arg", "non-ascii-key", "newline-key", "empty-key", "long-key",
        "timeout-without-wait", "empty-kind", "empty-id", "blank-id", "not-utf8-id",
        "negative-timeout", "bad-limit", "bad-url", "ftp-url", "empty-api-key", "non-ascii-api-key",
    ],
)  # fmt: skip
def test_odd_input_is_one_line_naming_the_argument(
    tmp_path: Path, make_args: Callable[[Path], tuple[str, ...]], argument: str
) -> None:
    # No API listens there: input is checked before anything is sent.
    result = _autoforge(tmp_path, f"http://127.0.0.1:{free_port()}", *make_args(tmp_path))

    assert result.code == 2, result.err
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"error: Invalid value for '{argument}': "), lines[0]
    assert "SECRET" not in result.err


def test_a_key_the_environment_gives_that_http_cannot_carry(tmp_path: Path) -> None:
    result = _autoforge(tmp_path, "http://127.0.0.1:9", "jobs", "list", key="clé-SECRET")

    assert result.code == 2
    assert result.err.splitlines() == [
        "error: AUTOFORGE_API_KEY: not a usable API key (only printable ASCII characters)"
    ]


def test_embed_and_search(api_server: ApiServer, migrated: Settings, tmp_path: Path) -> None:
    from db.database import Database
    from providers.embeddings.local import LocalEmbedder
    from tasks.embedding.job import embed_prompts
    from tests.support.prompt_corpus import QUERIES, add_corpus

    accepted = _autoforge(tmp_path, api_server.url, "embed", "--all-stale", "--no-wait")
    assert accepted.code == 0, accepted.err
    assert "accepted (embedding, queued)" in accepted.out
    both = _autoforge(tmp_path, api_server.url, "embed", "--all-stale", "--prompt-id", "p")
    assert both.code == 2
    assert "either --all-stale or --prompt-id" in both.err

    db = Database(migrated)
    try:
        ids = add_corpus(db)
        embed_prompts(db, LocalEmbedder(), all_stale=True)  # what the job does, here at once
    finally:
        db.dispose()
    found = _autoforge(tmp_path, api_server.url, "search", QUERIES["support"], "-k", "3")
    assert found.code == 0, found.err
    lines = found.out.splitlines()
    assert len(lines) == 3
    assert {line.split()[1] for line in lines} == set(ids["support"])
    hybrid = _autoforge(
        tmp_path, api_server.url, "search", "sourdough", "--mode", "hybrid", "-k", "1", "--json"
    )
    assert hybrid.code == 0, hybrid.err
    assert hybrid.json()["items"][0]["prompt"]["title"] == "Baking helper"
