"""The replica-sync kind's table: one row per sync (succeeded, skipped or failed).

Made by migration 0010 (``replica_syncs``). ``job_id`` names the ledger job that ran the
sync, without a foreign key: the history outlives pruned jobs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.column_types import UTCDateTime
from db.models import Base

SYNC_STATUSES = ("succeeded", "skipped", "failed")


class ReplicaSyncModel(Base):
    """One sync of one replica."""

    __tablename__ = "replica_syncs"
    __table_args__ = (
        CheckConstraint("status IN ('succeeded', 'skipped', 'failed')", name="status"),
        Index("idx_replica_syncs_replica_status_started", "replica", "status", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    replica: Mapped[str] = mapped_column(String(63), nullable=False, comment="レプリカ名")
    host: Mapped[str] = mapped_column(String(253), nullable=False, comment="ホスト")
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, comment="ジョブID")
    status: Mapped[str] = mapped_column(String(16), nullable=False, comment="結果")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    duration_s: Mapped[float] = mapped_column(Float(), nullable=False, default=0.0)
    changed: Mapped[int | None] = mapped_column(Integer(), nullable=True, comment="変更の有無")
    frames: Mapped[int | None] = mapped_column(Integer(), nullable=True, comment="取得フレーム")
    revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lag_s: Mapped[float | None] = mapped_column(Float(), nullable=True, comment="同期前の遅延")
    error: Mapped[str | None] = mapped_column(Text(), nullable=True)
