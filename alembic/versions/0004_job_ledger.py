"""The job ledger (``jobs``, also the transactional outbox) and the canary's effects.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False, comment="ジョブID（UUID）"),
        sa.Column("kind", sa.String(32), nullable=False, comment="ジョブ種別"),
        sa.Column("status", sa.String(16), nullable=False, comment="ジョブステータス"),
        sa.Column("arguments", sa.JSON(none_as_null=True), nullable=False, comment="引数（JSON）"),
        sa.Column("idempotency_key", sa.String(255), nullable=True, comment="冪等キー"),
        sa.Column("request_hash", sa.String(64), nullable=True, comment="リクエスト指紋"),
        sa.Column("attempts", sa.Integer(), nullable=False, comment="試行回数"),
        sa.Column("max_attempts", sa.Integer(), nullable=False, comment="最大試行回数"),
        sa.Column("progress", sa.Float(), nullable=False, comment="進捗"),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True, comment="結果（JSON）"),
        sa.Column("error_kind", sa.String(100), nullable=True, comment="エラー種別"),
        sa.Column("error_message", sa.Text(), nullable=True, comment="エラーメッセージ"),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True, comment="リース期限"),
        sa.Column("available_at", sa.DateTime(), nullable=True, comment="次回実行可能日時"),
        sa.Column("published_at", sa.DateTime(), nullable=True, comment="ブローカー送信日時"),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="作成日時"),
        sa.Column("started_at", sa.DateTime(), nullable=True, comment="開始日時"),
        sa.Column("finished_at", sa.DateTime(), nullable=True, comment="終了日時"),
        sa.Column("updated_at", sa.DateTime(), nullable=False, comment="更新日時"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("progress >= 0.0 AND progress <= 1.0", name=op.f("ck_jobs_progress")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index("idx_jobs_created_at", "jobs", ["created_at", "id"])
    op.create_index("idx_jobs_kind_created_at", "jobs", ["kind", "created_at", "id"])
    op.create_index("idx_jobs_status_created_at", "jobs", ["status", "created_at", "id"])
    op.create_index(
        "idx_jobs_unfinished",
        "jobs",
        ["status", "published_at"],
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("idx_jobs_finished_at", "jobs", ["finished_at"])

    op.create_table(
        "canary_effects",
        sa.Column("job_id", sa.String(36), nullable=False, comment="ジョブID"),
        sa.Column("attempt", sa.Integer(), nullable=False, comment="成功した試行"),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="作成日時"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_canary_effects_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_canary_effects")),
    )


def downgrade() -> None:
    op.drop_table("canary_effects")
    op.drop_table("jobs")
