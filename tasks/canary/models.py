"""The canary's table: one effect row per job, written with the job's ``succeeded``.

A kind's own tables live in its folder, on the application's declarative base
(:class:`db.models.Base`); its declaration names this module (``models``), so that
Alembic and the schema check see the table once the kinds are discovered. The table
itself is made by a migration (``canary_effects``: revision 0004).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.column_types import UTCDateTime, utcnow
from db.models import Base


class CanaryEffectModel(Base):
    """The one effect of a canary job: a row keyed by its job id (exactly once)."""

    __tablename__ = "canary_effects"

    job_id: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("jobs.id", ondelete="CASCADE"),
        primary_key=True,
        comment="ジョブID",
    )
    attempt: Mapped[int] = mapped_column(Integer(), nullable=False, comment="成功した試行")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, comment="作成日時"
    )
