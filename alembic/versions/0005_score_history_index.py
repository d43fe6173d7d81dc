"""Index for a prompt's score history (seed BP#10: time-series aggregation).

Covers the aggregation query (prompt, completion time, score) over completed runs only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "idx_evaluations_prompt_completed",
        "evaluations",
        ["prompt_id", "completed_at", "overall_score"],
        sqlite_where=sa.text("status = 'completed'"),
    )


def downgrade() -> None:
    op.drop_index("idx_evaluations_prompt_completed", table_name="evaluations")
