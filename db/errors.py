"""Typed database errors, and the one place where driver errors are classified.

The libSQL SDK raises a bare ``ValueError`` for every SQL error (a CHECK failure, a busy
database, a syntax error alike), so SQLAlchemy cannot classify them. :func:`classify`
maps them onto this tree, and :mod:`db.engine` installs it as the engine's
``handle_error`` hook, so callers only ever see these types.
"""

from __future__ import annotations

import re

from core.errors import AutoforgeError, InvalidData, NotFound, PermanentError, TransientError

__all__ = [
    "CheckViolation",
    "ConstraintViolation",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "InvalidData",
    "NotFound",
    "NotNullViolation",
    "QueryError",
    "UniqueViolation",
    "classify",
]


class DatabaseBusy(TransientError):
    """The database is locked or busy; the unit of work can be re-run."""


class DatabaseUnavailable(TransientError):
    """The database server cannot be reached."""


class ConstraintViolation(PermanentError):
    """A row breaks a database constraint."""

    constraint: str | None = None

    def __init__(self, message: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class CheckViolation(ConstraintViolation):
    """A row breaks a CHECK constraint."""


class UniqueViolation(ConstraintViolation):
    """A row duplicates a unique key."""


class ForeignKeyViolation(ConstraintViolation):
    """A row refers to a row that does not exist."""


class NotNullViolation(ConstraintViolation):
    """A required column is missing."""


class QueryError(PermanentError):
    """The database rejected a statement (syntax, unknown table or column, ...)."""


_BUSY = re.compile(r"database (table )?is locked|database is busy|SQLITE_BUSY|SQLITE_LOCKED", re.I)
_UNAVAILABLE = re.compile(
    r"Hrana|connection refused|error trying to connect|timed out|dns error|stream|"
    r"unable to open|connection reset|broken pipe",
    re.I,
)
_CONSTRAINT = re.compile(
    r"(CHECK|UNIQUE|FOREIGN KEY|NOT NULL|PRIMARY KEY) constraint failed:?\s*(.*)"
)
_KINDS: dict[str, type[ConstraintViolation]] = {
    "CHECK": CheckViolation,
    "UNIQUE": UniqueViolation,
    "PRIMARY KEY": UniqueViolation,
    "FOREIGN KEY": ForeignKeyViolation,
    "NOT NULL": NotNullViolation,
}


def classify(error: BaseException) -> AutoforgeError | None:
    """The typed error for a driver exception, or ``None`` if it is not a driver error.

    Constraint names are kept (``CHECK constraint failed: ck_prompts_status``) so
    callers can say which rule a row broke.
    """
    if isinstance(error, AutoforgeError):
        return error
    if not isinstance(error, ValueError | OSError) and type(error).__module__ != "libsql":
        return None
    text = str(error)
    if match := _CONSTRAINT.search(text):
        kind, detail = match.group(1), match.group(2).strip() or None
        return _KINDS[kind](f"{kind} constraint failed: {detail}", constraint=detail)
    if _BUSY.search(text):
        return DatabaseBusy(text)
    if _UNAVAILABLE.search(text):
        return DatabaseUnavailable(f"database unavailable: {text}")
    return QueryError(text)
