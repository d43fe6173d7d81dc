"""Opaque cursors for the newest-first job listing.

A cursor is the base64url text of the last row's ``created_at`` and ``id`` (a keyset
position, :class:`db.repositories.jobs.JobCursor`). Clients treat it as opaque; a cursor
that does not decode is a ``422`` naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from db.repositories.jobs import JobCursor
from domain.jobs import Job

_SEPARATOR = "|"
MAX_CURSOR_CHARS = 200


class InvalidCursor(ValueError):
    """The cursor was not issued by this API."""


def encode_cursor(job: Job) -> str:
    assert job.created_at is not None
    raw = f"{job.created_at.isoformat()}{_SEPARATOR}{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> JobCursor:
    """The position ``text`` names; raises :class:`InvalidCursor`."""
    if not text or len(text) > MAX_CURSOR_CHARS:
        raise InvalidCursor("cursor has the wrong length")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created_at_text, job_id = raw.split(_SEPARATOR)
        created_at = datetime.fromisoformat(created_at_text)
        if created_at.tzinfo is None or not job_id:
            raise ValueError("not a position this API hands out")
        # In UTC, as stored; a tampered offset can push the instant out of datetime's range.
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidCursor("cursor is not one this API issued") from None
    return JobCursor(created_at=created_at, id=job_id)
