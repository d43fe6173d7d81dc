"""The log formats: text by default, JSON on request, secrets scrubbed from both."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from core.logging import configure_logging, job_log_context
from tests.conftest import make_settings

TOKEN = 'tok-"quoted\\secret"-9f1e'
OPENAI_KEY = "sk-unit-NEVER-PRINT-33aa"


def _json_lines(err: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def test_text_stays_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(make_settings(tmp_path / "x.db"))

    logging.getLogger("autoforge.test").warning("plain %s", "words")

    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING autoforge.test: plain words")
    assert not line.startswith("{")


def test_json_lines_have_time_level_logger_message_and_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_settings(tmp_path / "x.db", log_format="JSON"))
    log = logging.getLogger("autoforge.test")

    log.info("before")
    with job_log_context("job-1", "canary", 2):
        log.warning("inside %d", 1)
        # A thread started without the job's context is not the job's.
        stranger = threading.Thread(target=log.info, args=("another thread",))
        stranger.start()
        stranger.join()
    log.error("after")

    before, inside, stray, after = _json_lines(capsys.readouterr().err)
    assert before.keys() == {"time", "level", "logger", "message"}
    assert before["level"] == "INFO"
    assert before["logger"] == "autoforge.test"
    assert before["time"].endswith("+00:00")
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "logger": "autoforge.test",
        "message": "inside 1",
        "job_id": "job-1",
        "kind": "canary",
        "attempt": 2,
    }
    assert "job_id" not in stray
    assert after["message"] == "after"
    assert "job_id" not in after


def test_json_scrubs_secrets_in_messages_and_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        tmp_path / "x.db",
        log_format="json",
        openai_api_key=OPENAI_KEY,
        turso_auth_token=TOKEN,
        openai_base_url="https://proxy-user:proxy-PASSWORD-7@llm.example/v1",
    )
    configure_logging(settings)
    log = logging.getLogger("some.library")

    log.warning("calling with key=%s token=%s", OPENAI_KEY, TOKEN)
    try:
        raise RuntimeError(f"refused https://proxy-user:proxy-PASSWORD-7@llm.example {TOKEN}")
    except RuntimeError:
        log.exception("request failed")

    err = capsys.readouterr().err
    warning, failure = _json_lines(err)
    assert warning["message"] == "calling with key=*** token=***"
    assert "RuntimeError: refused https://proxy-user:***@llm.example ***" in failure["exception"]
    for secret in (OPENAI_KEY, TOKEN, json.dumps(TOKEN)[1:-1], "proxy-PASSWORD-7"):
        assert secret not in err


@pytest.mark.parametrize(
    ("log_level", "asked", "effective"),
    [
        ("INFO", None, logging.INFO),
        ("INFO", logging.DEBUG, logging.DEBUG),  # celery worker --loglevel DEBUG
        ("INFO", "debug", logging.DEBUG),
        ("DEBUG", logging.WARNING, logging.DEBUG),  # Celery's default, below LOG_LEVEL
        ("WARNING", "INFO", logging.INFO),
        ("ERROR", "not-a-level", logging.ERROR),
    ],
)
def test_the_more_verbose_level_wins(
    tmp_path: Path, log_level: str, asked: int | str | None, effective: int
) -> None:
    settings = make_settings(tmp_path / "db", log_level=log_level)

    configure_logging(settings, level=asked)

    root = logging.getLogger()
    assert root.level == effective
    assert [h for h in root.handlers if getattr(h, "autoforge", False)] != []


def test_configuring_again_keeps_one_handler(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "db")

    configure_logging(settings)
    configure_logging(settings, level=logging.DEBUG)

    assert len([h for h in logging.getLogger().handlers if getattr(h, "autoforge", False)]) == 1
