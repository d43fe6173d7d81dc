"""Initial schema: the Prompt and Evaluation aggregates (the reviewed migration fbaa8f944a75).

Revision ID: 0001
Revises:
Create Date: 2025-10-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="作成日時"),
        sa.Column("updated_at", sa.DateTime(), nullable=False, comment="更新日時"),
    ]


def upgrade() -> None:
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.String(36), nullable=False, comment="テンプレートID（UUID）"),
        sa.Column("name", sa.String(255), nullable=False, comment="テンプレート名"),
        sa.Column("description", sa.Text(), nullable=True, comment="テンプレート説明"),
        sa.Column("content", sa.Text(), nullable=False, comment="テンプレート本文"),
        sa.Column("variables", sa.JSON(), nullable=True, comment="テンプレート変数（JSON配列）"),
        sa.Column("category", sa.String(100), nullable=True, comment="カテゴリ"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_templates")),
    )
    op.create_index("idx_prompt_templates_name", "prompt_templates", ["name"])
    op.create_index("idx_prompt_templates_category", "prompt_templates", ["category"])

    # Prompt aggregate
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(36), nullable=False, comment="プロンプトID（UUID）"),
        sa.Column("title", sa.String(255), nullable=False, comment="プロンプトタイトル"),
        sa.Column("content", sa.Text(), nullable=False, comment="プロンプト本文"),
        sa.Column("system_message", sa.Text(), nullable=True, comment="システムメッセージ"),
        sa.Column("user_id", sa.String(255), nullable=False, comment="所有ユーザーID"),
        sa.Column(
            "status", sa.String(50), nullable=False, comment="ステータス（draft/active/archived）"
        ),
        sa.Column(
            "tags", sa.JSON(), nullable=True, comment="タグ（JSON形式: PromptTagsSchema準拠）"
        ),
        sa.Column(
            "meta_data",
            sa.JSON(),
            nullable=True,
            comment="メタデータ（JSON形式: PromptMetadataSchema準拠）",
        ),
        sa.Column("version", sa.Integer(), nullable=False, comment="バージョン番号"),
        sa.Column(
            "parent_id", sa.String(36), nullable=True, comment="親プロンプトID（バージョン管理用）"
        ),
        sa.Column("template_id", sa.String(36), nullable=True, comment="元テンプレートID"),
        *_timestamps(),
        sa.Column("deleted_at", sa.DateTime(), nullable=True, comment="論理削除日時"),
        # 集約内の自己参照
        sa.ForeignKeyConstraint(
            ["parent_id"], ["prompts.id"], name=op.f("fk_prompts_parent_id_prompts")
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompts_template_id_prompt_templates"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
    )
    op.create_index("idx_prompts_user_id", "prompts", ["user_id"])
    op.create_index("idx_prompts_status", "prompts", ["status"])
    op.create_index("idx_prompts_created_at", "prompts", ["created_at"])
    op.create_index("idx_prompts_parent_id", "prompts", ["parent_id"])
    op.create_index("idx_prompts_deleted_at", "prompts", ["deleted_at"])

    # Evaluation aggregate
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(36), nullable=False, comment="評価ID（UUID）"),
        sa.Column("prompt_id", sa.String(36), nullable=False, comment="評価対象プロンプトID"),
        sa.Column("status", sa.String(50), nullable=False, comment="評価ステータス"),
        sa.Column("provider", sa.String(50), nullable=False, comment="LLMプロバイダー"),
        sa.Column("model", sa.String(100), nullable=False, comment="LLMモデル名"),
        sa.Column("overall_score", sa.Float(), nullable=True, comment="総合スコア（0.0-1.0）"),
        sa.Column(
            "metrics",
            sa.JSON(),
            nullable=True,
            comment="評価メトリクス（JSON形式: EvaluationMetricsSchema準拠）",
        ),
        sa.Column("error_message", sa.Text(), nullable=True, comment="エラーメッセージ"),
        sa.Column("started_at", sa.DateTime(), nullable=True, comment="評価開始日時"),
        sa.Column("completed_at", sa.DateTime(), nullable=True, comment="評価完了日時"),
        *_timestamps(),
        # 集約間参照（IDのみ）
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name=op.f("fk_evaluations_prompt_id_prompts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index("idx_evaluations_prompt_id", "evaluations", ["prompt_id"])
    op.create_index("idx_evaluations_status", "evaluations", ["status"])
    op.create_index("idx_evaluations_created_at", "evaluations", ["created_at"])
    op.create_index("idx_evaluations_provider_model", "evaluations", ["provider", "model"])

    op.create_table(
        "test_results",
        sa.Column("id", sa.String(36), nullable=False, comment="テスト結果ID（UUID）"),
        sa.Column("evaluation_id", sa.String(36), nullable=False, comment="評価ID"),
        sa.Column("test_case_name", sa.String(255), nullable=False, comment="テストケース名"),
        sa.Column("input_data", sa.JSON(), nullable=True, comment="入力データ（JSON）"),
        sa.Column("expected_output", sa.Text(), nullable=True, comment="期待出力"),
        sa.Column("actual_output", sa.Text(), nullable=True, comment="実際の出力"),
        sa.Column("score", sa.Float(), nullable=False, comment="スコア（0.0-1.0）"),
        sa.Column("passed", sa.Integer(), nullable=False, comment="合格フラグ（0/1）"),
        sa.Column("details", sa.JSON(), nullable=True, comment="詳細（JSON）"),
        sa.Column("execution_time_ms", sa.Integer(), nullable=True, comment="実行時間（ミリ秒）"),
        sa.Column("tokens_used", sa.Integer(), nullable=True, comment="使用トークン数"),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="作成日時"),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_test_results_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_results")),
    )
    op.create_index("idx_test_results_evaluation_id", "test_results", ["evaluation_id"])
    op.create_index("idx_test_results_score", "test_results", ["score"])


def downgrade() -> None:
    op.drop_table("test_results")
    op.drop_table("evaluations")
    op.drop_table("prompts")
    op.drop_table("prompt_templates")
