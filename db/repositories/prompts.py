"""Persistence of the Prompt aggregate (seed appendix A3)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.column_types import utcnow
from db.models import PromptModel
from domain.prompts import Prompt, PromptStatus
from domain.schemas import PromptMetadata, PromptTags, validated_json


class PromptRepository:
    """Prompts in the database. Takes a session; the caller owns the transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, prompt: Prompt) -> Prompt:
        """Insert ``prompt``; JSON columns are validated first. Returns it as stored."""
        row = PromptModel(
            id=prompt.id,
            title=prompt.title,
            content=prompt.content,
            system_message=prompt.system_message,
            user_id=prompt.user_id,
            status=str(prompt.status),
            tags=_tags_json(prompt.tags),
            meta_data=validated_json(PromptMetadata, prompt.meta_data, column="meta_data").values,
            version=prompt.version,
            parent_id=prompt.parent_id,
            template_id=prompt.template_id,
        )
        self.session.add(row)
        self.session.flush()
        return _to_domain(row)

    def get(self, prompt_id: str, *, include_deleted: bool = False) -> Prompt | None:
        query = select(PromptModel).where(PromptModel.id == prompt_id)
        if not include_deleted:
            query = query.where(PromptModel.deleted_at.is_(None))
        row = self.session.scalars(query).one_or_none()
        return _to_domain(row) if row else None

    def get_many(self, prompt_ids: Sequence[str]) -> dict[str, Prompt]:
        """The live prompts among ``prompt_ids``, by id."""
        if not prompt_ids:
            return {}
        query = select(PromptModel).where(
            PromptModel.id.in_(list(prompt_ids)), PromptModel.deleted_at.is_(None)
        )
        return {row.id: _to_domain(row) for row in self.session.scalars(query)}

    def list_for_user(
        self,
        user_id: str,
        *,
        status: PromptStatus | None = None,
        limit: int = 100,
        created_before: datetime | None = None,
    ) -> list[Prompt]:
        """A user's live prompts, newest first (served by a partial index)."""
        query = select(PromptModel).where(
            PromptModel.user_id == user_id, PromptModel.deleted_at.is_(None)
        )
        if status is not None:
            query = query.where(PromptModel.status == str(status))
        if created_before is not None:
            query = query.where(PromptModel.created_at < created_before)
        query = query.order_by(PromptModel.created_at.desc()).limit(limit)
        return [_to_domain(row) for row in self.session.scalars(query)]

    def versions_of(self, prompt_id: str) -> list[Prompt]:
        """Live direct children of a prompt (its next versions), oldest first."""
        query = (
            select(PromptModel)
            .where(PromptModel.parent_id == prompt_id, PromptModel.deleted_at.is_(None))
            .order_by(PromptModel.version, PromptModel.created_at)
        )
        return [_to_domain(row) for row in self.session.scalars(query)]

    def set_status(self, prompt_id: str, status: PromptStatus) -> bool:
        result = self.session.execute(
            update(PromptModel)
            .where(PromptModel.id == prompt_id, PromptModel.deleted_at.is_(None))
            .values(status=str(status), updated_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def soft_delete(self, prompt_id: str) -> bool:
        """Mark a prompt deleted; returns False if it was missing or already deleted."""
        now = utcnow()
        result = self.session.execute(
            update(PromptModel)
            .where(PromptModel.id == prompt_id, PromptModel.deleted_at.is_(None))
            .values(deleted_at=now, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _tags_json(tags: object) -> dict[str, object] | None:
    if tags is None:
        return None
    return validated_json(PromptTags, tags, column="tags").model_dump(mode="json")


def _to_domain(row: PromptModel) -> Prompt:
    return Prompt(
        id=row.id,
        title=row.title,
        content=row.content,
        system_message=row.system_message,
        user_id=row.user_id,
        status=PromptStatus(row.status),
        tags=None if row.tags is None else validated_json(PromptTags, row.tags, column="tags"),
        meta_data=validated_json(
            PromptMetadata, {"values": row.meta_data or {}}, column="meta_data"
        ),
        version=row.version,
        parent_id=row.parent_id,
        template_id=row.template_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )
