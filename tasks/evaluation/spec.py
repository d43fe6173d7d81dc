"""The evaluation request: ``POST /v1/jobs/evaluation``'s body and the job's arguments.

Everything that can be checked without the prompt or the provider is checked here, so
that the API answers 422 before a job exists: scorer parameters (a regular expression
compiles with RE2, a JSON Schema is a schema and RE2 can run its patterns), case names
unique in the run, scorers that compare with ``expected`` only where a case has one,
variable names usable in a placeholder, numbers that JSON can hold (no NaN or
Infinity). Errors name the field path and, inside a case, the case's name.

A job's stored arguments are read back with :func:`parse_spec`, without the checks added
since it may have been accepted (RE2 patterns, finite numbers): it still runs, and a
pattern that cannot be used fails its scorer on each case rather than the whole run.

Scorers are given as names (``"exact"``) or objects with parameters
(``{"type": "regex", "pattern": "..."}``); both become one of the ``*Scorer`` models below,
a union discriminated by ``type``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from core.errors import InvalidData
from domain.schemas import json_numbers_only
from tasks.evaluation.json_schemas import UnusableSchema, check_schema
from tasks.evaluation.patterns import CompiledPattern, UnusablePattern, compile_pattern
from tasks.evaluation.render import VariableValue, is_variable_name

MAX_TEST_CASES = 500
MAX_SCORERS_PER_CASE = 20
MAX_VARIABLES_PER_CASE = 100
MAX_PATTERN_LENGTH = 1000

_STORED = "stored"
#: Validation context of a job's stored arguments (see :func:`parse_spec`).
STORED_ARGUMENTS: Mapping[str, bool] = {_STORED: True}


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class ExactScorer(_Spec):
    """1 if the output equals ``expected``, surrounding whitespace aside."""

    type: Literal["exact"] = "exact"
    needs_expected: ClassVar[bool] = True


class ContainsScorer(_Spec):
    """1 if the output contains ``expected`` (surrounding whitespace of ``expected`` aside)."""

    type: Literal["contains"] = "contains"
    needs_expected: ClassVar[bool] = True


def _stored(info: ValidationInfo) -> bool:
    """Whether these are a job's stored arguments, accepted earlier under the rules of then."""
    return isinstance(info.context, Mapping) and bool(info.context.get(_STORED))


def _json_numbers(value: Any, info: ValidationInfo) -> Any:
    # Stored before this check existed, such a number still reads back (Python's JSON
    # reader accepts NaN): the run goes on, as it would have.
    return value if _stored(info) else json_numbers_only(value)


class RegexScorer(_Spec):
    """1 if ``pattern`` (an RE2 regular expression) matches somewhere in the output.

    RE2 runs in time linear in the output, whatever the pattern; it has no backreferences
    or lookaround, and its ``\\w``, ``\\d``, ``\\b`` are ASCII (``\\p{L}``: any letter).
    """

    type: Literal["regex"] = "regex"
    pattern: str = Field(
        min_length=1,
        max_length=MAX_PATTERN_LENGTH,
        description="RE2 syntax (no backreferences or lookaround); matched anywhere in the output.",
    )
    needs_expected: ClassVar[bool] = False

    @field_validator("pattern")
    @classmethod
    def _usable(cls, pattern: str, info: ValidationInfo) -> str:
        if not _stored(info):
            try:
                compile_pattern(pattern)
            except UnusablePattern as exc:
                raise ValueError(exc.message) from None
        return pattern

    def compiled(self) -> CompiledPattern:
        """The compiled pattern; raises :class:`UnusablePattern` (compilations are cached)."""
        return compile_pattern(self.pattern)


#: A variable's value, finite if a number: it is stored as JSON.
FiniteVariableValue = Annotated[VariableValue, AfterValidator(_json_numbers)]


class JsonValidScorer(_Spec):
    """1 if the output is JSON (and, given a ``schema``, valid against that JSON Schema)."""

    type: Literal["json_valid"] = "json_valid"
    # "schema" would shadow a BaseModel attribute: the field has another name, the alias.
    json_schema: Annotated[dict[str, Any] | None, AfterValidator(_json_numbers)] = Field(
        None, alias="schema"
    )
    needs_expected: ClassVar[bool] = False


class SimilarityScorer(_Spec):
    """Cosine similarity of the output's and ``expected``'s embeddings; passes at a threshold."""

    type: Literal["similarity"] = "similarity"
    threshold: float = Field(0.8, ge=0, le=1)
    needs_expected: ClassVar[bool] = True


def _expand_shorthand(value: object) -> object:
    """``"exact"`` is short for ``{"type": "exact"}``."""
    if isinstance(value, str):
        return {"type": value}
    return value


ScorerSpec = Annotated[
    ExactScorer | ContainsScorer | RegexScorer | JsonValidScorer | SimilarityScorer,
    Field(discriminator="type"),
    BeforeValidator(_expand_shorthand),
]

ScorerType = Literal["exact", "contains", "regex", "json_valid", "similarity"]

CaseName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


def _variable_name(name: str) -> str:
    if not is_variable_name(name):
        raise ValueError(
            f"variable name {name!r} cannot appear in a placeholder: use letters, digits and "
            "underscores, not starting with a digit"
        )
    return name


VariableName = Annotated[str, StringConstraints(max_length=100), AfterValidator(_variable_name)]


class TestCase(_Spec):
    """One test case: variables to render the prompt with, what to expect, how to score."""

    __test__ = False  # not a pytest test class

    name: CaseName
    variables: Annotated[
        dict[VariableName, FiniteVariableValue], Field(max_length=MAX_VARIABLES_PER_CASE)
    ] = Field(default_factory=dict)
    expected: str | None = None
    scorers: Annotated[list[ScorerSpec], Field(min_length=1, max_length=MAX_SCORERS_PER_CASE)]

    @field_validator("scorers")
    @classmethod
    def _scorers_fit_the_case(cls, scorers: list[ScorerSpec], info: ValidationInfo) -> list[Any]:
        # Checked here rather than in each scorer model so that the message names the case.
        case = repr(info.data.get("name", "?"))
        problems = []
        for index, scorer in enumerate(scorers):
            where = f"case {case}: scorers[{index}] ({scorer.type})"
            if scorer.needs_expected and info.data.get("expected") is None:
                problems.append(f"{where} compares with 'expected', which the case does not give")
            if isinstance(scorer, JsonValidScorer) and scorer.json_schema is not None:
                try:
                    check_schema(scorer.json_schema, patterns=not _stored(info))
                except UnusableSchema as exc:
                    problems.append(f"{where}.schema {exc.message}")
        if problems:
            raise ValueError("; ".join(problems))
        return scorers


class EvaluationSpec(_Spec):
    """An evaluation run's request: which prompt, which model, which cases, when it passes."""

    prompt_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    provider: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    threshold: float = Field(0.5, ge=0, le=1, description="The overall score needed to pass.")
    error_policy: Literal["record", "fail"] = Field(
        "record",
        description=(
            "record: a case whose provider call fails (permanently, or after its retries) "
            "scores 0 with the error in its details; fail: such a case fails the whole run."
        ),
    )
    test_cases: Annotated[list[TestCase], Field(min_length=1, max_length=MAX_TEST_CASES)]

    @field_validator("test_cases")
    @classmethod
    def _unique_case_names(cls, cases: list[TestCase]) -> list[TestCase]:
        duplicates = sorted(name for name, n in Counter(c.name for c in cases).items() if n > 1)
        if duplicates:
            names = ", ".join(repr(name) for name in duplicates)
            raise ValueError(f"test case names must be unique in a run; repeated: {names}")
        return cases

    def scorer_types(self) -> set[ScorerType]:
        """Every scorer type the run uses (e.g. to refuse ``similarity`` early)."""
        return {scorer.type for case in self.test_cases for scorer in case.scorers}


def describe_validation_error(exc: ValidationError, arguments: object = None) -> str:
    """The problems, each after its field path (``test_cases.2.scorers.0.regex.pattern``).

    Given the ``arguments`` that failed, a path into a test case also names the case.
    """
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        path = ".".join(str(part) for part in error["loc"]) or "(request)"
        name = _case_name_at(arguments, error["loc"])
        if name is not None and not message.startswith("case "):
            path += f" (case {name!r})"
        problems.append(f"{path}: {message}")
    return "; ".join(problems)


def _case_name_at(arguments: object, loc: tuple[int | str, ...]) -> str | None:
    if len(loc) < 3 or loc[0] != "test_cases" or not isinstance(loc[1], int):
        return None  # not inside a case, or about the case's name itself
    if not isinstance(arguments, dict):
        return None
    cases = arguments.get("test_cases")
    if not isinstance(cases, list) or not 0 <= loc[1] < len(cases):
        return None
    case = cases[loc[1]]
    name = case.get("name") if isinstance(case, dict) else None
    return name if isinstance(name, str) and loc[2] != "name" else None


def parse_spec(arguments: object) -> EvaluationSpec:
    """A job's stored arguments as an :class:`EvaluationSpec`, or :class:`InvalidData`
    naming why.

    Patterns are not compiled here: one that RE2 cannot use (say, a lookahead accepted
    before patterns ran on RE2) fails its scorer, case by case, when the run scores.
    """
    try:
        return EvaluationSpec.model_validate(arguments, context=STORED_ARGUMENTS)
    except ValidationError as exc:
        problems = describe_validation_error(exc, arguments)
        raise InvalidData(f"invalid evaluation request: {problems}") from None
