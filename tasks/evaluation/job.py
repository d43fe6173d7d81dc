"""The evaluation job: the glue between the ledger, the database and the run.

The job's arguments are the evaluation request (:class:`EvaluationSpec`); the evaluation
row has the job's id. The run itself touches no database: every result, the
evaluation's final status, score and metrics, and the job's ``succeeded`` are written in
one write transaction at the end, so nobody ever sees half a run.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from core.errors import NotFound, TransientError
from db.repositories.evaluations import EvaluationRepository
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.evaluations import EvaluationStatus
from domain.prompts import Prompt
from jobs.context import JobContext, JobOutcome
from jobs.errors import JobSuperseded
from providers.embeddings import embedder_for
from providers.llm import provider_for
from providers.rate_limit import limiter_for
from tasks.evaluation.run import run_evaluation
from tasks.evaluation.spec import parse_spec

log = logging.getLogger("autoforge.jobs.evaluation")

PROGRESS_EVERY_S = 1.0  # at most one progress write per second


def run_evaluation_job(context: JobContext) -> JobOutcome:
    spec = parse_spec(context.job.arguments)
    evaluation_id = context.job.id
    prompt = write_transaction(context.db, lambda s: _start(s, evaluation_id))
    settings = context.settings
    last_report = 0.0

    def on_progress(done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if done == total or now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            try:
                # Keep 1.0 for the final commit: "done" means results are stored.
                context.report_progress(min(done / total, 0.99))
            except TransientError:
                # Progress is informational: never abort (and repeat) the provider calls.
                log.warning("could not record the progress of job %s", context.job.id)

    # The embedding model loads only for a run that scores by similarity.
    embed = embedder_for(settings).embed if "similarity" in spec.scorer_types() else None
    provider = provider_for(spec.provider, settings)
    try:
        outcome = run_evaluation(
            spec,
            prompt.content,
            prompt.system_message,
            provider,
            limiter=limiter_for(context.redis(), spec.provider, settings),
            max_concurrency=settings.evaluation_max_concurrency,
            on_progress=on_progress,
            max_retries=settings.provider_max_retries,
            embed=embed,
        )
    finally:
        provider.close()

    def write_results(session: Session) -> None:
        evaluations = EvaluationRepository(session)
        evaluations.add_results(outcome.test_results(evaluation_id))
        evaluations.transition(
            evaluation_id,
            EvaluationStatus.COMPLETED,
            overall_score=outcome.overall_score,
            metrics=outcome.metrics,
        )

    return JobOutcome(result=outcome.summary(), write_effects=write_results)


def _start(session: Session, evaluation_id: str) -> Prompt:
    """Move the evaluation to ``running`` (once) and load its prompt."""
    evaluations = EvaluationRepository(session)
    evaluation = evaluations.get(evaluation_id, with_results=False)
    if evaluation is None:
        raise NotFound(f"evaluation {evaluation_id} does not exist")
    if evaluation.status is EvaluationStatus.PENDING:
        evaluations.transition(evaluation_id, EvaluationStatus.RUNNING)
    elif evaluation.status is not EvaluationStatus.RUNNING:
        # Cancelled (or finished) while the job waited: nothing to run.
        raise JobSuperseded(f"evaluation {evaluation_id} is {evaluation.status}")
    prompt = PromptRepository(session).get(evaluation.prompt_id, include_deleted=True)
    if prompt is None:
        raise NotFound(f"prompt {evaluation.prompt_id} of evaluation {evaluation_id} is gone")
    return prompt
