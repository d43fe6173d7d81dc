"""Prompts searchable by meaning and by words: ``prompt_embeddings`` and ``prompts_fts``.

- ``prompt_embeddings``: one vector per prompt (``F32_BLOB(384)``), the model that made it
  and the sha256 of the text embedded; a libSQL vector index over it (cosine):
  ``vector_top_k`` searches it.
- ``prompts_fts``: an FTS5 index of live prompts' titles and contents (BM25; English
  stemming, so "recipes" finds "recipe"), its rowid
  the prompt's rowid; kept in step with ``prompts`` by triggers, in the writer's own
  transaction: a new prompt is indexed, an edit re-indexed, a soft-deleted or deleted one
  removed. Soft-deleting a prompt also deletes its vector; editing its title or content
  marks its vector stale.

Traps of libSQL that this revision and any later one must respect:

- SQLAlchemy reflects ``F32_BLOB`` only because the dialect registers it
  (:mod:`db.dialect`); a batch recreate of ``prompt_embeddings`` would drop the vector
  index silently: recreate it afterwards (:data:`VECTOR_INDEX_DDL`).
- A batch recreate of ``prompts`` drops the triggers here and may renumber rowids: run
  :data:`FTS_REBUILD` and re-create the triggers after it.
- Dropping the vector index leaves its row in ``libsql_vector_meta_shadow``: the
  downgrade deletes it, and the table once empty.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIM = 384


class _F32Blob(UserDefinedType[list[float]]):
    # A frozen copy of the column type as of this revision (db.column_types.F32Blob).
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return f"F32_BLOB({DIM})"


# Neighbours stored as float8, at most 32 per node, and a short candidate list while
# inserting (insert_l=20): with libSQL's defaults (float32 copies, more neighbours) one
# 384-d vector costs about 85 KB of file and most of the embedding job's write time. Measured
# at 100k vectors (`python3 -m bench embeddings`): recall@10 1.00 against an exact scan,
# p50 4.2 ms against 107 ms, and the job at 0.85x the bare model (0.75x with the default
# insert_l).
VECTOR_INDEX_DDL = (
    "CREATE INDEX idx_prompt_embeddings_vector ON prompt_embeddings (libsql_vector_idx("
    "embedding, 'metric=cosine', 'compress_neighbors=float8', 'max_neighbors=32', "
    "'insert_l=20'))"
)
FTS_REBUILD = (
    "DELETE FROM prompts_fts",
    "INSERT INTO prompts_fts (rowid, prompt_id, title, content) "
    "SELECT rowid, id, title, content FROM prompts WHERE deleted_at IS NULL",
)
TRIGGERS = {
    "trg_prompts_fts_insert": """
        CREATE TRIGGER trg_prompts_fts_insert AFTER INSERT ON prompts
        WHEN new.deleted_at IS NULL
        BEGIN
            INSERT INTO prompts_fts (rowid, prompt_id, title, content)
            VALUES (new.rowid, new.id, new.title, new.content);
        END""",
    "trg_prompts_fts_update": """
        CREATE TRIGGER trg_prompts_fts_update AFTER UPDATE OF title, content, deleted_at
        ON prompts
        BEGIN
            DELETE FROM prompts_fts WHERE rowid = old.rowid;
            INSERT INTO prompts_fts (rowid, prompt_id, title, content)
            SELECT new.rowid, new.id, new.title, new.content WHERE new.deleted_at IS NULL;
        END""",
    "trg_prompts_fts_delete": """
        CREATE TRIGGER trg_prompts_fts_delete AFTER DELETE ON prompts
        BEGIN
            DELETE FROM prompts_fts WHERE rowid = old.rowid;
        END""",
    "trg_prompts_embedding_stale": """
        CREATE TRIGGER trg_prompts_embedding_stale AFTER UPDATE OF title, content ON prompts
        BEGIN
            UPDATE prompt_embeddings SET stale = 1 WHERE prompt_id = new.id;
        END""",
    "trg_prompts_soft_delete_embedding": """
        CREATE TRIGGER trg_prompts_soft_delete_embedding AFTER UPDATE OF deleted_at ON prompts
        WHEN new.deleted_at IS NOT NULL
        BEGIN
            DELETE FROM prompt_embeddings WHERE prompt_id = new.id;
        END""",
}


def upgrade() -> None:
    op.create_table(
        "prompt_embeddings",
        sa.Column("prompt_id", sa.String(36), nullable=False, comment="プロンプトID"),
        sa.Column("model", sa.String(100), nullable=False, comment="埋め込みモデル名"),
        sa.Column("dim", sa.Integer(), nullable=False, comment="次元数"),
        sa.Column(
            "content_sha256", sa.String(64), nullable=False, comment="埋め込んだテキストのSHA-256"
        ),
        sa.Column("embedding", _F32Blob(), nullable=False, comment="埋め込みベクトル"),
        sa.Column("stale", sa.Integer(), nullable=False, comment="古いベクトル（0/1）"),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="作成日時"),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name="fk_prompt_embeddings_prompt_id_prompts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prompt_id", name="pk_prompt_embeddings"),
    )
    op.create_index(
        "idx_prompt_embeddings_model_sha", "prompt_embeddings", ["model", "content_sha256"]
    )
    op.execute(VECTOR_INDEX_DDL)
    op.execute(
        "CREATE VIRTUAL TABLE prompts_fts USING fts5("
        "prompt_id UNINDEXED, title, content, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    for statement in FTS_REBUILD:
        op.execute(statement)
    for ddl in TRIGGERS.values():
        op.execute(ddl)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS prompts_fts")
    op.execute("DROP INDEX IF EXISTS idx_prompt_embeddings_vector")
    op.drop_index("idx_prompt_embeddings_model_sha", table_name="prompt_embeddings")
    op.drop_table("prompt_embeddings")
    # libSQL keeps the dropped index's metadata row, and the table holding such rows.
    bind = op.get_bind()
    exists = bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'libsql_vector_meta_shadow'"
    ).first()
    if exists:
        op.execute(
            "DELETE FROM libsql_vector_meta_shadow WHERE name = 'idx_prompt_embeddings_vector'"
        )
        left = bind.exec_driver_sql("SELECT count(*) FROM libsql_vector_meta_shadow").scalar()
        if not left:
            op.execute("DROP TABLE libsql_vector_meta_shadow")
