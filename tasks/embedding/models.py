"""The embedding kind's table: one vector per prompt, in a libSQL vector index.

``embedding`` is an ``F32_BLOB(384)`` column indexed by ``libsql_vector_idx`` (cosine):
one index, one dimension. Each row carries the model that made its vector and the
sha256 of the exact text embedded, so a prompt whose title or content changed (or
whose vector came from another model) is stale, and identical text under the same
model is never embedded twice. Made by revision 0009 (with the vector index, which
SQLAlchemy cannot declare, and the ``prompts_fts`` full-text index).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.settings import EMBEDDING_INDEX_DIM
from db.column_types import F32Blob, UTCDateTime, utcnow
from db.models import Base, unmodelled_tables

#: The vector index over ``prompt_embeddings.embedding`` (made by revision 0009, remade
#: with 1-bit neighbour copies by 0011).
VECTOR_INDEX = "idx_prompt_embeddings_vector"

# The full-text index over prompts and its FTS5 tables (revision 0009, in raw SQL).
unmodelled_tables(r"prompts_fts(_\w+)?")


class PromptEmbeddingModel(Base):
    """A prompt's vector: of which text (sha256), by which model."""

    __tablename__ = "prompt_embeddings"

    prompt_id: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("prompts.id", ondelete="CASCADE"),
        primary_key=True,
        comment="プロンプトID",
    )
    model: Mapped[str] = mapped_column(String(100), nullable=False, comment="埋め込みモデル名")
    dim: Mapped[int] = mapped_column(Integer(), nullable=False, comment="次元数")
    content_sha256: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="埋め込んだテキストのSHA-256"
    )
    embedding: Mapped[list[float]] = mapped_column(
        F32Blob(EMBEDDING_INDEX_DIM), nullable=False, comment="埋め込みベクトル"
    )
    # Set by a trigger on ``prompts`` when the title or content changes (revision 0009).
    stale: Mapped[int] = mapped_column(
        Integer(), nullable=False, default=0, comment="古いベクトル（0/1）"
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, comment="作成日時"
    )

    __table_args__ = (
        # The cache: a vector of the same text by the same model is reused, not computed.
        Index("idx_prompt_embeddings_model_sha", "model", "content_sha256"),
    )
