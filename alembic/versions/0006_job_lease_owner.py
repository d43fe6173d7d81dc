"""Who holds a running job's lease: the worker process that claimed it.

A worker's main process renews the leases of every job its pool processes run, in one
UPDATE matched on this column, so renewal no longer runs inside the job's own process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("lease_owner", sa.String(255), nullable=True, comment="リース保持者"),
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_owner")
