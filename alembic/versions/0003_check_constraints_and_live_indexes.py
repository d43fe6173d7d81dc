"""CHECK constraints (seed section 2.1, appendix A1), unique case names, live-row indexes.

Partial indexes cover the rows that are not soft-deleted (seed section 3.1 improvement);
SQLite has supported them since 3.8. One test result per case name and evaluation makes
a redelivered evaluation run unable to duplicate its results.

Revision ID: 0003
Revises: 0002
Create Date: 2025-10-02 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("prompts", recreate="always") as batch:
        batch.create_check_constraint("status", "status IN ('draft', 'active', 'archived')")
        batch.create_check_constraint("version", "version >= 1")
    op.create_index(
        "idx_prompts_live_user_status_created",
        "prompts",
        ["user_id", "status", "created_at"],
        sqlite_where=LIVE,
    )
    op.create_index(
        "idx_prompts_live_user_created", "prompts", ["user_id", "created_at"], sqlite_where=LIVE
    )

    with op.batch_alter_table("evaluations", recreate="always") as batch:
        batch.create_check_constraint(
            "status", "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')"
        )
        batch.create_check_constraint(
            "overall_score", "overall_score >= 0.0 AND overall_score <= 1.0"
        )

    with op.batch_alter_table("test_results", recreate="always") as batch:
        batch.create_check_constraint("score", "score >= 0.0 AND score <= 1.0")
        batch.create_check_constraint("passed", "passed IN (0, 1)")
        batch.create_unique_constraint(
            op.f("uq_test_results_evaluation_id_test_case_name"),
            ["evaluation_id", "test_case_name"],
        )
        batch.drop_index("idx_test_results_evaluation_id")


def downgrade() -> None:
    with op.batch_alter_table("test_results", recreate="always") as batch:
        batch.create_index("idx_test_results_evaluation_id", ["evaluation_id"])
        batch.drop_constraint(op.f("uq_test_results_evaluation_id_test_case_name"), type_="unique")
        batch.drop_constraint(op.f("ck_test_results_passed"), type_="check")
        batch.drop_constraint(op.f("ck_test_results_score"), type_="check")
    with op.batch_alter_table("evaluations", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_evaluations_overall_score"), type_="check")
        batch.drop_constraint(op.f("ck_evaluations_status"), type_="check")
    op.drop_index("idx_prompts_live_user_created", table_name="prompts")
    op.drop_index("idx_prompts_live_user_status_created", table_name="prompts")
    with op.batch_alter_table("prompts", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_prompts_version"), type_="check")
        batch.drop_constraint(op.f("ck_prompts_status"), type_="check")
