"""The evaluation kind: a prompt run against test cases with an LLM provider, scored.

The request (the job's arguments) is :class:`tasks.evaluation.spec.EvaluationSpec`; the
job's logic is :mod:`tasks.evaluation.job`.
"""

from __future__ import annotations

from jobs.kind import KindSpec, Ref
from tasks.evaluation.spec import EvaluationSpec

KIND = KindSpec(
    name="evaluation",
    queue="evaluations",
    task_name="autoforge.evaluation",
    arguments=EvaluationSpec,
    example={
        "prompt_id": "0b9f6a52-8d1e-4c4b-9a57-3f2e1c0d9b7a",
        "provider": "echo",
        "model": "echo-1",
        "threshold": 0.5,
        "test_cases": [
            {
                "name": "ann",
                "variables": {"name": "Ann", "lang": "English"},
                "expected": "Say hello to Ann in English.",
                "scorers": ["exact"],
            },
            {
                "name": "bob",
                "variables": {"name": "Bob", "lang": "French"},
                "expected": "Bonjour",
                "scorers": ["contains", {"type": "regex", "pattern": "Bob"}],
            },
        ],
    },
    summary="Enqueue an evaluation run",
    description="Run a prompt against test cases with an LLM provider and score the "
    "outputs.\n\nThe evaluation (`pending`) and its job are created in one transaction; "
    "the evaluation has the job's id: follow progress at `/v1/jobs/{id}`, read the results "
    "at `/v1/evaluations/{id}`. Problems that can be seen now (unknown provider, a template "
    "variable without a value or a value without a placeholder, a scorer that is not "
    "available) answer `422` naming the field.",
    logic=Ref("tasks.evaluation.job:run_evaluation_job"),
    max_attempts=5,
    time_limit_s=1800,
    admission=Ref("tasks.evaluation.admission:admit"),
    # The evaluation follows its job: made, cancelled and failed with it.
    domain_rows=Ref("tasks.evaluation.lifecycle:create_evaluation"),
    on_cancel=Ref("tasks.evaluation.lifecycle:cancel_evaluation"),
    on_failure=Ref("tasks.evaluation.lifecycle:fail_evaluation"),
    # An evaluation's status only moves forward (pending -> running -> final).
    retry_refused="A failed evaluation is final; enqueue a new evaluation run instead.",
    progress_detail=Ref("tasks.evaluation.lifecycle:progress_in_cases"),
)
