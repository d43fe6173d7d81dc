"""Scorers: how well one output meets one case. Each yields a :class:`Score` in [0, 1].

A case's score is the mean of its scorers' values; it passes only if every scorer passes.
Scoring never calls out of the process except through ``embed`` (similarity); in
particular a JSON Schema's ``$ref`` is never fetched from the network. Patterns, those in
a JSON Schema included, run on RE2 (:mod:`tasks.evaluation.patterns`), in time linear in
the output: no pattern can stall a worker. A scorer that cannot run on a case (a pattern
RE2 refuses, a ``$ref`` the schema does not hold) fails on that case, with the reason in
its ``error``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import PermanentError
from tasks.evaluation.json_schemas import UnusableSchema, schema_errors
from tasks.evaluation.patterns import UnusablePattern
from tasks.evaluation.spec import (
    ContainsScorer,
    ExactScorer,
    JsonValidScorer,
    RegexScorer,
    ScorerSpec,
    SimilarityScorer,
)

#: Turns texts into embedding vectors, one per text, in order.
Embed = Callable[[list[str]], list[list[float]]]

_MAX_SCHEMA_ERRORS = 5
_MAX_MATCH_CHARS = 200


@dataclass(frozen=True, slots=True)
class Score:
    """One scorer's verdict: ``value`` in [0, 1], ``passed``, and what explains it."""

    value: float
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaseScore:
    """A case's verdict: the mean of its scorers' values; passed if all of them passed."""

    value: float
    passed: bool
    scorers: tuple[dict[str, Any], ...]


class MissingExpected(PermanentError):
    """A scorer compares the output with ``expected``, and the case has none."""


class ScorerUnavailable(PermanentError):
    """A scorer cannot run in this deployment."""


SIMILARITY_UNAVAILABLE = "similarity needs the embedding provider, which is not available yet"


def score(
    scorer: ScorerSpec,
    actual: str,
    expected: str | None,
    *,
    case_name: str,
    embed: Embed | None = None,
) -> Score:
    """Score ``actual`` with one scorer."""
    if scorer.needs_expected and expected is None:
        raise MissingExpected(
            f"case {case_name!r}: scorer {scorer.type!r} compares with 'expected', "
            "which the case does not give"
        )
    match scorer:
        case ExactScorer():
            assert expected is not None
            return _verdict(actual.strip() == expected.strip())
        case ContainsScorer():
            assert expected is not None
            return _verdict(expected.strip() in actual)
        case RegexScorer():
            return _regex(scorer, actual)
        case JsonValidScorer():
            return _json_valid(scorer, actual)
        case SimilarityScorer():
            assert expected is not None
            return _similarity(scorer, actual, expected, embed)
    raise AssertionError(f"no scorer for {scorer!r}")  # pragma: no cover


def score_case(
    scorers: Sequence[ScorerSpec],
    actual: str,
    expected: str | None,
    *,
    case_name: str,
    embed: Embed | None = None,
) -> CaseScore:
    """Score ``actual`` with every scorer of a case."""
    verdicts = [
        (scorer, score(scorer, actual, expected, case_name=case_name, embed=embed))
        for scorer in scorers
    ]
    return CaseScore(
        value=math.fsum(v.value for _, v in verdicts) / len(verdicts),
        passed=all(v.passed for _, v in verdicts),
        scorers=tuple(
            {"type": scorer.type, "score": v.value, "passed": v.passed, **v.detail}
            for scorer, v in verdicts
        ),
    )


def _verdict(ok: bool, **detail: Any) -> Score:
    return Score(value=1.0 if ok else 0.0, passed=ok, detail=detail)


def _regex(scorer: RegexScorer, actual: str) -> Score:
    try:
        pattern = scorer.compiled()
    except UnusablePattern as exc:
        # Only a spec stored before the API checked patterns with RE2 gets here.
        return _verdict(False, error=exc.message)
    found = pattern.search(actual)
    if found is None:
        return _verdict(False)
    return _verdict(True, match=found.group(0)[:_MAX_MATCH_CHARS])


def _json_valid(scorer: JsonValidScorer, actual: str) -> Score:
    try:
        document = json.loads(actual)
    except json.JSONDecodeError as exc:
        return _verdict(False, error=f"not JSON: {exc}")
    if scorer.json_schema is None:
        return _verdict(True)
    try:
        errors = schema_errors(scorer.json_schema, document)
    except UnusableSchema as exc:
        # A "$ref" the schema does not hold, or a schema stored before the API checked
        # its patterns with RE2.
        return _verdict(False, error=f"the schema {exc.message}")
    if not errors:
        return _verdict(True)
    return _verdict(
        False,
        error="does not match the schema",
        schema_errors=[
            f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}"
            for e in errors[:_MAX_SCHEMA_ERRORS]
        ],
    )


def _similarity(scorer: SimilarityScorer, actual: str, expected: str, embed: Embed | None) -> Score:
    if embed is None:
        raise ScorerUnavailable(SIMILARITY_UNAVAILABLE)
    vectors = embed([actual, expected])
    if len(vectors) != 2 or len(vectors[0]) != len(vectors[1]):
        raise ScorerUnavailable("the embedding provider answered with unusable vectors")
    similarity = cosine(vectors[0], vectors[1])
    # Opposed vectors are as unlike as unrelated ones: the score stays in [0, 1].
    value = min(1.0, max(0.0, similarity))
    return Score(
        value=value,
        passed=value >= scorer.threshold,
        detail={"similarity": similarity, "threshold": scorer.threshold},
    )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of the angle between ``a`` and ``b``; 0 if either is the zero vector."""
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm
