"""An evaluation follows its job: made with it, cancelled and failed with it.

The evaluation row has its job's id. These hooks (named in the kind's declaration) run
inside the transaction that changes the job, so the two never disagree: the evaluation
is created ``pending`` in the transaction that accepts the job, cancelled in the one that
cancels it, and failed, with the reason, in the one that ends it failed. The job's
progress is shown in cases done of total.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.repositories.evaluations import EvaluationRepository
from db.repositories.prompts import PromptRepository
from domain.evaluations import Evaluation, EvaluationStatus
from domain.jobs import Job, JobError, ProgressDetail
from tasks.evaluation.admission import missing_prompt


def create_evaluation(session: Session, job: Job) -> None:
    """The evaluation (``pending``) of a job being accepted, with the job's id."""
    arguments = job.arguments
    # Checked again in the accepting transaction: the prompt may be gone by now.
    if PromptRepository(session).get(arguments["prompt_id"]) is None:
        missing_prompt(arguments["prompt_id"])
    EvaluationRepository(session).add(
        Evaluation(
            id=job.id,
            prompt_id=arguments["prompt_id"],
            provider=arguments["provider"],
            model=arguments["model"],
        )
    )


def cancel_evaluation(session: Session, job: Job) -> None:
    """The evaluation of a job being cancelled is cancelled too (unless it is final)."""
    evaluations = EvaluationRepository(session)
    evaluation = evaluations.get(job.id, with_results=False)
    if evaluation is not None and not evaluation.status.is_final:
        evaluations.transition(job.id, EvaluationStatus.CANCELLED)


def fail_evaluation(session: Session, job: Job, error: JobError) -> None:
    """When the job ends failed, its evaluation does too, with the reason."""
    evaluations = EvaluationRepository(session)
    evaluation = evaluations.get(job.id, with_results=False)
    if evaluation is not None and not evaluation.status.is_final:
        evaluations.transition(
            job.id, EvaluationStatus.FAILED, error_message=f"{error.kind}: {error.message}"
        )


def progress_in_cases(job: Job) -> ProgressDetail | None:
    """The job's progress as test cases done of total."""
    cases = job.arguments.get("test_cases")
    if not isinstance(cases, list) or not cases:
        return None
    total = len(cases)
    return ProgressDetail(
        done=min(total, int(job.progress * total + 1e-9)), total=total, unit="cases"
    )
