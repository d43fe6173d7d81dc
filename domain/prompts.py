"""The Prompt aggregate: a prompt and its versions (``parent_id``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from domain.schemas import PromptMetadata, PromptTags


class PromptStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt. A new version is a new prompt whose ``parent_id`` is the previous one."""

    title: str
    content: str
    user_id: str
    status: PromptStatus = PromptStatus.DRAFT
    system_message: str | None = None
    tags: PromptTags | None = None
    meta_data: PromptMetadata = field(default_factory=PromptMetadata)
    version: int = 1
    parent_id: str | None = None
    template_id: str | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def new_version(self, *, content: str, title: str | None = None) -> Prompt:
        """The next version: a new prompt pointing back at this one."""
        return replace(
            self,
            id=new_id(),
            title=title or self.title,
            content=content,
            version=self.version + 1,
            parent_id=self.id,
            status=PromptStatus.DRAFT,
            created_at=None,
            updated_at=None,
            deleted_at=None,
        )
