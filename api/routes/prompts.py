"""``/v1/prompts``: the minimal prompt endpoints that make the system usable on its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from api.resources import Resources
from api.schemas import ErrorBody, PromptCreate, PromptList, PromptOut, PromptVersionCreate
from core.errors import NotFound
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt, PromptStatus
from domain.schemas import PromptMetadata

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

MAX_PAGE = 200


def _location(prompt_id: str) -> str:
    return f"{router.prefix}/{prompt_id}"


@router.post("", status_code=201)
def create_prompt(body: PromptCreate, response: Response, resources: Resources) -> PromptOut:
    """Create a prompt (version 1)."""
    prompt = Prompt(
        title=body.title,
        content=body.content,
        user_id=body.user_id,
        system_message=body.system_message,
        status=body.status,
        tags=body.tags,
        meta_data=PromptMetadata(values=body.meta_data),
    )
    stored = write_transaction(resources.runtime.db, lambda s: PromptRepository(s).add(prompt))
    response.headers["Location"] = _location(stored.id)
    return PromptOut.from_domain(stored)


@router.get("/{prompt_id}", responses={404: {"model": ErrorBody}})
def get_prompt(prompt_id: str, resources: Resources) -> PromptOut:
    """One live prompt; a soft-deleted prompt is not found."""
    with resources.runtime.db.read_session() as session:
        prompt = PromptRepository(session).get(prompt_id)
    if prompt is None:
        raise NotFound(f"Prompt {prompt_id} does not exist.")
    return PromptOut.from_domain(prompt)


@router.get("")
def list_prompts(
    resources: Resources,
    user_id: Annotated[str, Query(min_length=1, max_length=255)],
    status: PromptStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> PromptList:
    """A user's live prompts, newest first; soft-deleted prompts are hidden. Served from
    the local replica when ``READ_REPLICA`` is set (it may lag the primary)."""
    with resources.stale_read_db.read_session() as session:
        prompts = PromptRepository(session).list_for_user(user_id, status=status, limit=limit)
    return PromptList(items=[PromptOut.from_domain(prompt) for prompt in prompts])


@router.post("/{prompt_id}/versions", status_code=201, responses={404: {"model": ErrorBody}})
def create_prompt_version(
    prompt_id: str, body: PromptVersionCreate, response: Response, resources: Resources
) -> PromptOut:
    """Create the next version of a prompt: a new prompt whose ``parent_id`` is this one."""

    def unit(session: Session) -> Prompt:
        prompts = PromptRepository(session)
        parent = prompts.get(prompt_id)
        if parent is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.")
        return prompts.add(parent.new_version(content=body.content, title=body.title))

    stored = write_transaction(resources.runtime.db, unit)
    response.headers["Location"] = _location(stored.id)
    return PromptOut.from_domain(stored)
