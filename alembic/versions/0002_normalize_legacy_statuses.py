"""Normalize legacy status values before CHECK constraints arrive (seed section 4.1).

Older code stored free-form statuses ("Draft", "published", "DONE", ...). Map them onto
the closed sets: prompts to draft/active/archived, evaluations to
pending/running/completed/failed/cancelled. A value we cannot place is archived (prompts)
or failed (evaluations), and says so in ``error_message``, rather than guessed at.

Revision ID: 0002
Revises: 0001
Create Date: 2025-10-02 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE prompts
        SET status = CASE
            WHEN lower(trim(status)) IN ('draft', 'new', '') THEN 'draft'
            WHEN lower(trim(status)) IN ('active', 'published', 'live', 'enabled') THEN 'active'
            ELSE 'archived'
        END
        WHERE status IS NULL OR status NOT IN ('draft', 'active', 'archived')
        """
    )
    op.execute(
        """
        UPDATE evaluations
        SET error_message = CASE
                WHEN lower(trim(status)) IN (
                    'pending', 'queued', 'new', 'running', 'in_progress', 'processing',
                    'completed', 'complete', 'done', 'success', 'succeeded',
                    'failed', 'failure', 'error', 'cancelled', 'canceled', 'aborted'
                ) THEN error_message
                ELSE coalesce(
                    error_message, 'legacy status ' || quote(status) || ' normalized to failed'
                )
            END,
            status = CASE
            WHEN lower(trim(status)) IN ('pending', 'queued', 'new') THEN 'pending'
            WHEN lower(trim(status)) IN ('running', 'in_progress', 'processing') THEN 'running'
            WHEN lower(trim(status)) IN ('completed', 'complete', 'done', 'success', 'succeeded')
                THEN 'completed'
            WHEN lower(trim(status)) IN ('cancelled', 'canceled', 'aborted') THEN 'cancelled'
            ELSE 'failed'
        END
        WHERE status IS NULL
           OR status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')
        """
    )
    # Scores outside [0, 1] came from percentage-style scorers: rescale, else clamp.
    for table, column in (("evaluations", "overall_score"), ("test_results", "score")):
        op.execute(
            f"""
            UPDATE {table}
            SET {column} = CASE
                WHEN {column} > 1.0 AND {column} <= 100.0 THEN {column} / 100.0
                WHEN {column} > 1.0 THEN 1.0
                ELSE 0.0
            END
            WHERE {column} < 0.0 OR {column} > 1.0
            """  # noqa: S608 - table and column names are the literals above
        )
    op.execute("UPDATE test_results SET passed = 1 WHERE passed NOT IN (0, 1) AND passed > 0")
    op.execute("UPDATE test_results SET passed = 0 WHERE passed NOT IN (0, 1)")


def downgrade() -> None:
    # Normalized values are valid legacy values too: nothing to undo.
    pass
