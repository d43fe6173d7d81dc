"""The vector index keeps 1-bit copies of its neighbours (``compress_neighbors=float1bit``).

The index of revision 0009 kept float8 copies: each inserted vector rewrote about 20 KB of
index pages, and that write was most of the gap between the embedding job and the bare
model. With 1-bit copies (48 bytes per neighbour instead of 384) an insert costs less than
half as much CPU, and the file takes about a third of the space. Measured with
``python3 -m bench embeddings`` at 100k vectors: recall@10 0.993 against an exact scan
(1.00 with float8), p50 about 5 ms against about 150 ms for the exact scan, a file of 733 MB
instead of 1,964 MB. Scores do not change: the search asks the index for twice the
candidates it needs and orders them by their stored full vectors.

Upgrading rebuilds the index over the vectors already stored (about 2 s per 1,000 vectors
on 2 cores; the write lock is held meanwhile). Downgrading rebuilds 0009's index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 20:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "idx_prompt_embeddings_vector"

#: The vector index as this revision makes it (a later batch recreate of
#: ``prompt_embeddings`` must run this again: it drops the index silently).
VECTOR_INDEX_DDL = (
    f"CREATE INDEX {_INDEX} ON prompt_embeddings (libsql_vector_idx("
    "embedding, 'metric=cosine', 'compress_neighbors=float1bit', 'max_neighbors=32', "
    "'insert_l=20'))"
)
# A frozen copy of revision 0009's index.
_PREVIOUS_DDL = (
    f"CREATE INDEX {_INDEX} ON prompt_embeddings (libsql_vector_idx("
    "embedding, 'metric=cosine', 'compress_neighbors=float8', 'max_neighbors=32', "
    "'insert_l=20'))"
)


def upgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {_INDEX}")
    op.execute(VECTOR_INDEX_DDL)


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {_INDEX}")
    op.execute(_PREVIOUS_DDL)
