"""Job-listing cursors: opaque, round-trip exactly, and refuse anything not issued."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from api.pagination import InvalidCursor, decode_cursor, encode_cursor
from db.repositories.jobs import JobCursor
from domain.jobs import Job


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_round_trip() -> None:
    created = datetime(2026, 11, 27, 11, 54, 43, 649095, tzinfo=UTC)
    job = Job(kind="canary", arguments={}, id="3f1c-id", created_at=created)

    cursor = encode_cursor(job)

    assert decode_cursor(cursor) == JobCursor(created_at=created, id="3f1c-id")
    assert "=" not in cursor
    assert cursor.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "A" * 201,
        _b64("no separator"),
        _b64("2026-11-27T11:54:43+00:00|"),
        _b64("2026-11-27T11:54:43|naive-time"),
        _b64("yesterday|some-id"),
        _b64("2026-11-27T11:54:43+00:00|a|b"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_invalid_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
