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

from sqlalchemy import ColumnElement, bindparam, func, literal, select, type_coerce
from sqlalchemy.orm import Session

from db.column_types import UTCDateTime

_FORMAT = "%Y-%m-%d %H:%M:%f"  # %f is SS.SSS: milliseconds


def db_now(offset_s: float = 0.0) -> ColumnElement[datetime]:
    """The database's current UTC time plus ``offset_s`` seconds, as a SQL expression."""
    text = func.strftime(_FORMAT, "now", f"{offset_s:+.3f} seconds").concat(literal("000"))
    return type_coerce(text, UTCDateTime())


def db_now_at(offset_param: str) -> ColumnElement[datetime]:
    """:func:`db_now` with the offset bound at execution (``offset_param``: the name of a
    bound parameter given :func:`offset` of the seconds): one statement, built once,
    serves every offset."""
    text = func.strftime(_FORMAT, "now", bindparam(offset_param)).concat(literal("000"))
    return type_coerce(text, UTCDateTime())


def offset(seconds: float) -> str:
    """The value of a :func:`db_now_at` parameter: ``seconds`` from now."""
    return f"{seconds:+.3f} seconds"


def database_now(session: Session) -> datetime:
    """Read the database's current UTC time (aware)."""
    value = session.scalar(select(db_now()))
    assert isinstance(value, datetime)
    return value
