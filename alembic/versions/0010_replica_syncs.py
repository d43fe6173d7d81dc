"""Replica syncs: one row per sync of a local replica (succeeded, skipped or failed).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replica_syncs",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("replica", sa.String(63), nullable=False, comment="レプリカ名"),
        sa.Column("host", sa.String(253), nullable=False, comment="ホスト"),
        sa.Column("job_id", sa.String(36), nullable=True, comment="ジョブID"),
        sa.Column("status", sa.String(16), nullable=False, comment="結果"),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=True, comment="変更の有無"),
        sa.Column("frames", sa.Integer(), nullable=True, comment="取得フレーム"),
        sa.Column("revision", sa.String(64), nullable=True),
        sa.Column("lag_s", sa.Float(), nullable=True, comment="同期前の遅延"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('succeeded', 'skipped', 'failed')", name=op.f("ck_replica_syncs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replica_syncs")),
    )
    op.create_index(
        "idx_replica_syncs_replica_status_started",
        "replica_syncs",
        ["replica", "status", "started_at"],
    )


def downgrade() -> None:
    op.drop_index("idx_replica_syncs_replica_status_started", table_name="replica_syncs")
    op.drop_table("replica_syncs")
