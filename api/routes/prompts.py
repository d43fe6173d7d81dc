"""``/v1/prompts``: the minimal prompt endpoints that make the system usable on its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from api.resources import Resources
from api.schemas import (
    ErrorBody,
    PromptCreate,
    PromptList,
    PromptOut,
    PromptSearchHit,
    PromptSearchResults,
    PromptVersionCreate,
)
from core.errors import NotFound
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt, PromptStatus
from domain.schemas import PromptMetadata
from tasks.embedding.search import SearchMode
from tasks.embedding.search import search_prompts as search

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

MAX_PAGE = 200
MAX_K = 100
MAX_QUERY_CHARS = 2000


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


@router.get("/search")
def search_prompts(
    resources: Resources,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="The query.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many prompts, at most.")] = 10,
    mode: Annotated[
        SearchMode,
        Query(description="vector: by meaning; hybrid: by meaning and by words (BM25), fused."),
    ] = "vector",
) -> PromptSearchResults:
    """Live prompts by meaning (``vector``) or by meaning and words (``hybrid``), best
    first. Only prompts with a vector from the configured model are found: see
    ``POST /v1/jobs/embedding``. Soft-deleted prompts never appear."""
    hits = search(
        resources.runtime.db,
        resources.embedder(),
        q,
        k=k,
        mode=mode,
        redis=resources.redis,
    )
    return PromptSearchResults(
        items=[PromptSearchHit(prompt=PromptOut.from_domain(h.prompt), score=h.score) for h in hits]
    )


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


@router.delete("/{prompt_id}", status_code=204, responses={404: {"model": ErrorBody}})
def delete_prompt(prompt_id: str, resources: Resources) -> Response:
    """Soft-delete a prompt: it disappears from reads, lists and searches (its vector and
    its full-text entry are removed with it); its evaluations are kept."""
    deleted = write_transaction(
        resources.runtime.db, lambda s: PromptRepository(s).soft_delete(prompt_id)
    )
    if not deleted:
        raise NotFound(f"Prompt {prompt_id} does not exist.")
    return Response(status_code=204)


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
