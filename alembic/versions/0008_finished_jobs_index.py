"""Finished jobs by status and finish time: what pruning walks, in small batches.

A partial index over finished rows only (``succeeded``, ``failed``, ``cancelled``), so a
job's way from ``queued`` through ``running`` never touches it; it gets one entry when
the job ends. It replaces the plain ``finished_at`` index, which no query used: with the
statuses in the query (written into its SQL) SQLite seeks ``(status, finished_at)`` and
reads the row ids of the oldest finished jobs from the index alone.

Only indexes change: ``jobs`` is not rebuilt, so the statistics triggers of 0007 stay.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = sa.text("status IN ('succeeded', 'failed', 'cancelled')")


def upgrade() -> None:
    op.create_index("idx_jobs_finished", "jobs", ["status", "finished_at"], sqlite_where=FINISHED)
    op.drop_index("idx_jobs_finished_at", table_name="jobs")


def downgrade() -> None:
    op.create_index("idx_jobs_finished_at", "jobs", ["finished_at"])
    op.drop_index("idx_jobs_finished", table_name="jobs")
