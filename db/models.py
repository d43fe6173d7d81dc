"""ORM models: the tables of the Prompt and Evaluation aggregates and the job ledger.

A job kind's own tables live in its folder (``tasks/<kind>/models.py``, e.g. the
canary's effects) on the same :class:`Base`; its declaration names that module.

These are persistence models only; the domain entities live in :mod:`domain` and the
repositories translate between the two. Aggregates refer to each other by id alone (no
``relationship()`` across them), as in the reviewed design (seed section 2.1).
Column comments are the seed's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.column_types import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROMPT_STATUSES = ("draft", "active", "archived")
EVALUATION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Where :func:`unmodelled_tables` keeps its patterns: the metadata's own ``info``.
UNMODELLED_TABLES = "unmodelled_tables"


def unmodelled_tables(pattern: str) -> None:
    """Say that the tables whose whole name matches ``pattern`` are made by a migration
    in raw SQL, with no model (a full-text index and its own tables): comparing the
    models with a database skips them (:func:`db.migrations.include_name`). Called by
    the models module that goes with that migration."""
    patterns: set[str] = Base.metadata.info.setdefault(UNMODELLED_TABLES, set())
    patterns.add(pattern)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, comment="作成日時"
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow, comment="更新日時"
    )


class PromptTemplateModel(TimestampMixin, Base):
    __tablename__ = "prompt_templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="テンプレートID（UUID）")
    name: Mapped[str] = mapped_column(String(255), nullable=False, comment="テンプレート名")
    description: Mapped[str | None] = mapped_column(Text(), comment="テンプレート説明")
    content: Mapped[str] = mapped_column(Text(), nullable=False, comment="テンプレート本文")
    variables: Mapped[list[str] | None] = mapped_column(
        JSON(none_as_null=True), comment="テンプレート変数（JSON配列）"
    )
    category: Mapped[str | None] = mapped_column(String(100), comment="カテゴリ")

    __table_args__ = (
        Index("idx_prompt_templates_name", "name"),
        Index("idx_prompt_templates_category", "category"),
    )


class PromptModel(TimestampMixin, Base):
    __tablename__ = "prompts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="プロンプトID（UUID）")
    title: Mapped[str] = mapped_column(String(255), nullable=False, comment="プロンプトタイトル")
    content: Mapped[str] = mapped_column(Text(), nullable=False, comment="プロンプト本文")
    system_message: Mapped[str | None] = mapped_column(Text(), comment="システムメッセージ")
    user_id: Mapped[str] = mapped_column(String(255), nullable=False, comment="所有ユーザーID")
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default="draft", comment="ステータス（draft/active/archived）"
    )
    tags: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="タグ（JSON形式: PromptTagsSchema準拠）"
    )
    meta_data: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="メタデータ（JSON形式: PromptMetadataSchema準拠）"
    )
    version: Mapped[int] = mapped_column(
        Integer(), nullable=False, default=1, comment="バージョン番号"
    )
    parent_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("prompts.id"), comment="親プロンプトID（バージョン管理用）"
    )
    template_id: Mapped[str | None] = mapped_column(
        String(36),
        ForeignKey("prompt_templates.id", ondelete="SET NULL"),
        comment="元テンプレートID",
    )
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="論理削除日時")

    __table_args__ = (
        CheckConstraint(_in("status", PROMPT_STATUSES), name="status"),
        CheckConstraint("version >= 1", name="version"),
        Index("idx_prompts_user_id", "user_id"),
        Index("idx_prompts_status", "status"),
        Index("idx_prompts_created_at", "created_at"),
        Index("idx_prompts_parent_id", "parent_id"),
        Index("idx_prompts_deleted_at", "deleted_at"),
        # Live rows only (seed section 3.1 "partial indexes"; SQLite has had them since 3.8).
        Index(
            "idx_prompts_live_user_status_created",
            "user_id",
            "status",
            "created_at",
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index(
            "idx_prompts_live_user_created",
            "user_id",
            "created_at",
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )


class EvaluationModel(TimestampMixin, Base):
    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="評価ID（UUID）")
    prompt_id: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("prompts.id", ondelete="CASCADE"),
        nullable=False,
        comment="評価対象プロンプトID",
    )
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default="pending", comment="評価ステータス"
    )
    provider: Mapped[str] = mapped_column(String(50), nullable=False, comment="LLMプロバイダー")
    model: Mapped[str] = mapped_column(String(100), nullable=False, comment="LLMモデル名")
    overall_score: Mapped[float | None] = mapped_column(Float(), comment="総合スコア（0.0-1.0）")
    metrics: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="評価メトリクス（JSON形式: EvaluationMetricsSchema準拠）"
    )
    error_message: Mapped[str | None] = mapped_column(Text(), comment="エラーメッセージ")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="評価開始日時")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="評価完了日時")

    __table_args__ = (
        CheckConstraint(_in("status", EVALUATION_STATUSES), name="status"),
        CheckConstraint("overall_score >= 0.0 AND overall_score <= 1.0", name="overall_score"),
        Index("idx_evaluations_prompt_id", "prompt_id"),
        Index("idx_evaluations_status", "status"),
        Index("idx_evaluations_created_at", "created_at"),
        Index("idx_evaluations_provider_model", "provider", "model"),
        # Score history of a prompt (seed BP#10): completed runs by completion time.
        Index(
            "idx_evaluations_prompt_completed",
            "prompt_id",
            "completed_at",
            "overall_score",
            sqlite_where=text("status = 'completed'"),
        ),
    )


class TestResultModel(Base):
    __tablename__ = "test_results"
    __test__ = False  # not a pytest test class

    id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="テスト結果ID（UUID）")
    evaluation_id: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("evaluations.id", ondelete="CASCADE"),
        nullable=False,
        comment="評価ID",
    )
    test_case_name: Mapped[str] = mapped_column(
        String(255), nullable=False, comment="テストケース名"
    )
    input_data: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="入力データ（JSON）"
    )
    expected_output: Mapped[str | None] = mapped_column(Text(), comment="期待出力")
    actual_output: Mapped[str | None] = mapped_column(Text(), comment="実際の出力")
    score: Mapped[float] = mapped_column(Float(), nullable=False, comment="スコア（0.0-1.0）")
    passed: Mapped[int] = mapped_column(Integer(), nullable=False, comment="合格フラグ（0/1）")
    details: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="詳細（JSON）"
    )
    execution_time_ms: Mapped[int | None] = mapped_column(Integer(), comment="実行時間（ミリ秒）")
    tokens_used: Mapped[int | None] = mapped_column(Integer(), comment="使用トークン数")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, comment="作成日時"
    )

    __table_args__ = (
        CheckConstraint("score >= 0.0 AND score <= 1.0", name="score"),
        CheckConstraint("passed IN (0, 1)", name="passed"),
        # Also serves lookups by evaluation_id (its leading column): no separate index.
        UniqueConstraint("evaluation_id", "test_case_name"),
        Index("idx_test_results_score", "score"),
    )


class JobModel(Base):
    """The job ledger: the durable truth about every accepted job (the outbox, too)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="ジョブID（UUID）")
    kind: Mapped[str] = mapped_column(String(32), nullable=False, comment="ジョブ種別")
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="queued", comment="ジョブステータス"
    )
    arguments: Mapped[dict[str, Any]] = mapped_column(
        JSON(none_as_null=True), nullable=False, comment="引数（JSON）"
    )
    idempotency_key: Mapped[str | None] = mapped_column(
        String(255), unique=True, comment="冪等キー"
    )
    request_hash: Mapped[str | None] = mapped_column(String(64), comment="リクエスト指紋")
    attempts: Mapped[int] = mapped_column(Integer(), nullable=False, default=0, comment="試行回数")
    max_attempts: Mapped[int] = mapped_column(Integer(), nullable=False, comment="最大試行回数")
    progress: Mapped[float] = mapped_column(Float(), nullable=False, default=0.0, comment="進捗")
    result: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), comment="結果（JSON）"
    )
    error_kind: Mapped[str | None] = mapped_column(String(100), comment="エラー種別")
    error_message: Mapped[str | None] = mapped_column(Text(), comment="エラーメッセージ")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="リース期限")
    # "<worker node>:<worker main pid>:<pid of the process running the attempt>"
    lease_owner: Mapped[str | None] = mapped_column(String(255), comment="リース保持者")
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="次回実行可能日時")
    published_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="ブローカー送信日時"
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, comment="作成日時"
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="開始日時")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="終了日時")
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow, comment="更新日時"
    )

    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint("progress >= 0.0 AND progress <= 1.0", name="progress"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("idx_jobs_created_at", "created_at", "id"),
        Index("idx_jobs_kind_created_at", "kind", "created_at", "id"),
        Index("idx_jobs_status_created_at", "status", "created_at", "id"),
        # The sweeper's work list: only unfinished jobs.
        Index(
            "idx_jobs_unfinished",
            "status",
            "published_at",
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        # Pruning's work list: finished jobs by status and finish time (revision 0008).
        Index(
            "idx_jobs_finished",
            "status",
            "finished_at",
            sqlite_where=text("status IN ('succeeded', 'failed', 'cancelled')"),
        ),
    )


class JobStatModel(Base):
    """Statistics of the job ledger, kept by triggers on ``jobs`` (migration 0007).

    Read-only for the application: the triggers write it in the same transaction as the
    change of the job, and metrics read it (:mod:`db.repositories.job_stats`).
    """

    __tablename__ = "job_stats"

    name: Mapped[str] = mapped_column(String(32), primary_key=True, comment="統計名")
    kind: Mapped[str] = mapped_column(String(32), primary_key=True, comment="ジョブ種別")
    status: Mapped[str] = mapped_column(String(16), primary_key=True, comment="ジョブステータス")
    le: Mapped[str] = mapped_column(String(16), primary_key=True, comment="ヒストグラム上限")
    value: Mapped[float] = mapped_column(Float(), nullable=False, comment="値")
