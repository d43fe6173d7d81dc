"""The database's clock, for the times that different processes compare.

A lease written by one worker is judged lapsed by another worker's claim and by the
sweeper in beat; a retry's due time is set by a worker and read by the sweeper. With a
remote database those processes run on different machines whose clocks drift, so these
times are computed by the database itself (SQLite's ``'now'`` on the server), inside
the statement that uses them. Within one statement ``'now'`` is one instant.

The text has the exact shape :class:`~db.column_types.UTCDateTime` stores (naive UTC,
six fraction digits), so it compares as text with values written from Python.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, literal, select, type_coerce
from sqlalchemy.orm import Session

from db.column_types import UTCDateTime

_FORMAT = "%Y-%m-%d %H:%M:%f"  # %f is SS.SSS: milliseconds


def db_now(offset_s: float = 0.0) -> ColumnElement[datetime]:
    """The database's current UTC time plus ``offset_s`` seconds, as a SQL expression."""
    text = func.strftime(_FORMAT, "now", f"{offset_s:+.3f} seconds").concat(literal("000"))
    return type_coerce(text, UTCDateTime())


def database_now(session: Session) -> datetime:
    """Read the database's current UTC time (aware)."""
    value = session.scalar(select(db_now()))
    assert isinstance(value, datetime)
    return value
