"""What is checked before an evaluation is accepted, beyond what its request says by itself.

The API runs :func:`admit` before it enqueues an evaluation (the kind's admission hook):
problems that can be seen now (an unknown or disabled provider, a scorer that is not
available, a prompt that does not exist, a template variable without a value or a value
without a placeholder) are a ``422`` naming the field, rather than a job that fails later.
"""

from __future__ import annotations

from typing import NoReturn

from core.errors import ConfigurationError
from core.settings import Settings
from db.database import Database
from db.repositories.prompts import PromptRepository
from jobs.errors import ArgumentProblem, InvalidArguments
from providers.embeddings import embedder_for
from providers.llm import UnknownProvider, known_providers, provider_for
from tasks.evaluation.render import TemplateError, check_cases
from tasks.evaluation.spec import EvaluationSpec


def admit(spec: EvaluationSpec, settings: Settings, db: Database) -> None:
    """Refuse an evaluation that cannot run here, naming the offending field.

    Raises:
        InvalidArguments: the first problem found (the template check reports every case).
    """
    if spec.provider not in known_providers(settings):
        try:
            provider_for(spec.provider, settings).close()
        except UnknownProvider as exc:  # its message says why (unknown, or disabled here)
            _invalid(("provider",), str(exc))
    if "similarity" in spec.scorer_types():
        try:
            embedder_for(settings)
        except ConfigurationError as exc:
            i, j = next(
                (i, j)
                for i, case in enumerate(spec.test_cases)
                for j, scorer in enumerate(case.scorers)
                if scorer.type == "similarity"
            )
            _invalid(
                ("test_cases", i, "scorers", j),
                f"case {spec.test_cases[i].name!r}: the 'similarity' scorer needs the "
                f"embedding provider, which is not available here: {exc}",
            )
    with db.read_session() as session:
        prompt = PromptRepository(session).get(spec.prompt_id)
    if prompt is None:
        missing_prompt(spec.prompt_id)
    try:
        check_cases(prompt.content, spec.test_cases, system_message=prompt.system_message)
    except TemplateError as exc:
        index = {case.name: i for i, case in enumerate(spec.test_cases)}
        raise InvalidArguments(
            [
                ArgumentProblem(
                    ("test_cases", index[problem.case_name], "variables"), problem.describe()
                )
                for problem in exc.problems
            ]
        ) from None


def missing_prompt(prompt_id: str) -> NoReturn:
    """Refuse an evaluation of a prompt that does not exist."""
    _invalid(("prompt_id",), f"prompt {prompt_id} does not exist")


def _invalid(loc: tuple[str | int, ...], message: str) -> NoReturn:
    raise InvalidArguments([ArgumentProblem(loc, message)])
