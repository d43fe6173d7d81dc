"""``/v1/evaluations`` and a prompt's runs: read what evaluation jobs produced."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.resources import Resources
from api.schemas import (
    ErrorBody,
    EvaluationList,
    EvaluationOut,
    ScoreBucket,
    ScoreHistory,
)
from core.errors import NotFound
from db.repositories.evaluations import EvaluationRepository
from db.repositories.prompts import PromptRepository

router = APIRouter(tags=["evaluations"])

Bucket = Literal["hour", "day", "week", "month"]


@router.get("/v1/evaluations/{evaluation_id}", responses={404: {"model": ErrorBody}})
def get_evaluation(evaluation_id: str, resources: Resources) -> EvaluationOut:
    """An evaluation with its per-case test results (the id is its job's id)."""
    with resources.runtime.db.read_session() as session:
        evaluation = EvaluationRepository(session).get(evaluation_id, with_results=True)
    if evaluation is None:
        raise NotFound(f"Evaluation {evaluation_id} does not exist.")
    return EvaluationOut.from_domain(evaluation, with_results=True)


@router.get("/v1/prompts/{prompt_id}/evaluations", responses={404: {"model": ErrorBody}})
def list_prompt_evaluations(
    prompt_id: str,
    resources: Resources,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EvaluationList:
    """A prompt's evaluation runs, newest first, with their scores (no per-case results).

    Compare versions of a prompt by listing the runs of each (see ``parent_id``).
    """
    with resources.stale_read_db.read_session() as session:
        _require_prompt(PromptRepository(session), prompt_id)
        evaluations = EvaluationRepository(session).list_for_prompt(prompt_id, limit=limit)
    return EvaluationList(
        items=[EvaluationOut.from_domain(e, with_results=False) for e in evaluations]
    )


@router.get("/v1/prompts/{prompt_id}/score-history", responses={404: {"model": ErrorBody}})
def score_history(prompt_id: str, resources: Resources, bucket: Bucket = "day") -> ScoreHistory:
    """Mean score and run count per ``bucket`` of completion time (UTC), computed in SQL."""
    with resources.stale_read_db.read_session() as session:
        _require_prompt(PromptRepository(session), prompt_id)
        points = EvaluationRepository(session).score_history(prompt_id, bucket=bucket)
    return ScoreHistory(
        prompt_id=prompt_id,
        bucket=bucket,
        points=[ScoreBucket(bucket=p.bucket, mean_score=p.mean_score, runs=p.runs) for p in points],
    )


def _require_prompt(prompts: PromptRepository, prompt_id: str) -> None:
    if prompts.get(prompt_id, include_deleted=True) is None:
        raise NotFound(f"Prompt {prompt_id} does not exist.")
