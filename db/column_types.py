"""Column types shared by the models."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, UserDefinedType


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored as naive UTC text (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class F32Blob(UserDefinedType[list[float]]):
    """libSQL's vector column, ``F32_BLOB(dim)``: ``dim`` little-endian float32 values.

    Bound from and read into a list of floats. Registered with the dialect
    (:mod:`db.dialect`) so that reflection, and so Alembic's batch mode and schema
    comparison, see this type instead of ``NullType``.
    """

    cache_ok = True

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def get_col_spec(self, **kw: Any) -> str:
        return f"F32_BLOB({self.dim})"

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], bytes | None]:
        dim = self.dim

        def process(value: Any) -> bytes | None:
            if value is None:
                return None
            if len(value) != dim:
                raise ValueError(f"a vector of {len(value)} values for an F32_BLOB({dim}) column")
            return struct.pack(f"<{dim}f", *value)

        return process

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], list[float] | None]:
        def process(value: Any) -> list[float] | None:
            if value is None:
                return None
            return list(struct.unpack(f"<{len(value) // 4}f", value))

        return process

    def __repr__(self) -> str:
        return f"F32Blob({self.dim})"
