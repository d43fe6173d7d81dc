"""Scorers: each yields a value in [0, 1] and passed; a case is their mean and their 'and'."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import TypeAdapter

from tasks.evaluation.scorers import (
    MissingExpected,
    ScorerUnavailable,
    cosine,
    score,
    score_case,
)
from tasks.evaluation.spec import STORED_ARGUMENTS, ScorerSpec

SCORER = TypeAdapter(ScorerSpec)


def scorer(value: str | dict[str, Any]) -> ScorerSpec:
    return SCORER.validate_python(value)


@pytest.mark.parametrize(
    ("actual", "expected", "value"),
    [
        ("Paris", "Paris", 1.0),
        ("  Paris\n", "Paris ", 1.0),
        ("paris", "Paris", 0.0),
        ("Paris, France", "Paris", 0.0),
    ],
)
def test_exact_compares_without_surrounding_whitespace(
    actual: str, expected: str, value: float
) -> None:
    verdict = score(scorer("exact"), actual, expected, case_name="c")
    assert verdict.value == value
    assert verdict.passed is (value == 1.0)


@pytest.mark.parametrize(
    ("actual", "expected", "value"),
    [
        ("The capital is Paris.", "Paris", 1.0),
        ("The capital is Paris.", " Paris\n", 1.0),
        ("The capital is paris.", "Paris", 0.0),
    ],
)
def test_contains_looks_for_expected_in_the_output(
    actual: str, expected: str, value: float
) -> None:
    assert score(scorer("contains"), actual, expected, case_name="c").value == value


def test_regex_searches_anywhere_and_reports_the_match() -> None:
    spec = scorer({"type": "regex", "pattern": r"\d{4}-\d{2}-\d{2}"})
    verdict = score(spec, "It was on 2024-05-01, a Wednesday.", None, case_name="c")
    assert verdict.passed
    assert verdict.detail == {"match": "2024-05-01"}
    assert not score(spec, "some day in May", None, case_name="c").passed


# Each of these backtracks for hours (or forever) in Python's ``re`` on the text given.
CATASTROPHIC = [
    (r"(a+)+$", "a" * 36 + "!"),
    (r"^(a|aa)+$", "a" * 60 + "!"),
    (r"^(a|a?)+$", "a" * 40 + "!"),
    (r"(x+x+)+y", "x" * 60),
    (r"^(\w+\s?)*$", "An output that makes a backtracking engine try every split of it!"),
    (
        r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
        "a" * 50 + "!",
    ),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_regex_cannot_backtrack_catastrophically(pattern: str, text: str) -> None:
    verdict = score(scorer({"type": "regex", "pattern": pattern}), text, None, case_name="c")
    assert (verdict.value, verdict.passed) == (0.0, False)
    assert verdict.detail == {}


@pytest.mark.timeout(10)
def test_regex_with_nested_quantifiers_still_matches_where_it_should() -> None:
    spec = scorer({"type": "regex", "pattern": r"(a+)+$"})
    verdict = score(spec, "b" + "a" * 10_000, None, case_name="c")
    assert verdict.passed
    assert verdict.detail == {"match": "a" * 200}  # the reported match is cut at 200


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"x(?=y)", "invalid perl operator: (?="),
        (r"(?<!a)b", "invalid perl operator: (?<!"),
        (r"\pL{1000}", "pattern too large"),
    ],
)
def test_a_stored_pattern_that_re2_refuses_fails_the_scorer_with_the_reason(
    pattern: str, reason: str
) -> None:
    # A spec stored before patterns were checked with RE2 is read without that check.
    stored = SCORER.validate_python({"type": "regex", "pattern": pattern}, context=STORED_ARGUMENTS)
    verdict = score(stored, "xy ab", None, case_name="c")
    assert (verdict.value, verdict.passed) == (0.0, False)
    assert verdict.detail["error"].startswith("RE2 cannot use this pattern: ")
    assert reason in verdict.detail["error"]


def test_json_valid_without_a_schema() -> None:
    assert score(scorer("json_valid"), '{"a": [1, 2]}', None, case_name="c").passed
    verdict = score(scorer("json_valid"), "{'a': 1}", None, case_name="c")
    assert verdict.value == 0.0
    assert verdict.detail["error"].startswith("not JSON: ")


def test_json_valid_against_a_schema_lists_where_it_fails() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
    spec = scorer({"type": "json_valid", "schema": schema})
    assert score(spec, '{"name": "Ada", "age": 36}', None, case_name="c").passed
    verdict = score(spec, '{"name": 3, "age": -1}', None, case_name="c")
    assert not verdict.passed
    assert verdict.detail["schema_errors"] == [
        "age: -1 is less than the minimum of 0",
        "name: 3 is not of type 'string'",
    ]


def test_a_schema_ref_is_never_fetched_from_the_network() -> None:
    # A port nobody listens on: were the reference fetched, this would fail differently.
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}
    verdict = score(scorer({"type": "json_valid", "schema": schema}), "{}", None, case_name="c")
    assert not verdict.passed
    assert "refers to what it does not contain" in verdict.detail["error"]


def test_a_local_ref_resolves() -> None:
    schema = {
        "$defs": {"positive": {"type": "integer", "minimum": 1}},
        "type": "array",
        "items": {"$ref": "#/$defs/positive"},
    }
    spec = scorer({"type": "json_valid", "schema": schema})
    assert score(spec, "[1, 2]", None, case_name="c").passed
    assert not score(spec, "[1, 0]", None, case_name="c").passed


def test_a_schemas_patterns_run_on_re2_however_python_would_backtrack() -> None:
    # Python's re (jsonschema's own) would take hours on each of these, holding the GIL.
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "(a+)+$"}},
        "patternProperties": {"^(x+x+)+y$": {"type": "integer"}},
    }
    spec = scorer({"type": "json_valid", "schema": schema})
    hostile = json.dumps({"name": "a" * 40 + "!", "x" * 40: "not checked", "xxy": 1})

    verdict = score(spec, hostile, None, case_name="c")

    assert not verdict.passed
    assert verdict.detail["schema_errors"] == [f"name: {'a' * 40 + '!'!r} does not match '(a+)+$'"]
    assert score(spec, json.dumps({"name": "aaa", "xxy": 1}), None, case_name="c").passed
    assert not score(spec, json.dumps({"name": "aaa", "xxy": "1"}), None, case_name="c").passed


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "x(?=y)"},
        {"type": "object", "patternProperties": {"(?<!a)b": {}}},
    ],
)
def test_a_stored_schema_with_a_pattern_re2_refuses_fails_the_scorer_with_the_reason(
    schema: dict[str, Any],
) -> None:
    # A spec stored before schemas' patterns were checked with RE2 is read without that check.
    stored = SCORER.validate_python(
        {"type": "json_valid", "schema": schema}, context=STORED_ARGUMENTS
    )
    verdict = score(stored, '"xy"', None, case_name="c")
    assert (verdict.value, verdict.passed) == (0.0, False)
    assert verdict.detail["error"].startswith("the schema has a pattern at pattern")
    assert "invalid perl operator: (?" in verdict.detail["error"]


def test_similarity_without_an_embedding_provider_says_so() -> None:
    with pytest.raises(ScorerUnavailable) as caught:
        score(scorer("similarity"), "a", "b", case_name="c")
    assert caught.value.message == (
        "similarity needs the embedding provider, which is not available yet"
    )


def test_similarity_is_the_cosine_of_the_embeddings_against_a_threshold() -> None:
    table = {"cat": [1.0, 0.0], "kitten": [0.9, 0.1], "car": [0.0, 1.0], "anti": [-1.0, 0.0]}

    def embed(texts: list[str]) -> list[list[float]]:
        return [table[text] for text in texts]

    spec = scorer({"type": "similarity", "threshold": 0.9})
    close = score(spec, "kitten", "cat", case_name="c", embed=embed)
    assert close.passed
    assert close.value == pytest.approx(0.9 / math.hypot(0.9, 0.1))
    far = score(spec, "car", "cat", case_name="c", embed=embed)
    assert (far.value, far.passed) == (0.0, False)
    opposite = score(spec, "anti", "cat", case_name="c", embed=embed)
    assert opposite.value == 0.0  # clipped into [0, 1]
    assert opposite.detail["similarity"] == pytest.approx(-1.0)


def test_cosine_of_a_zero_vector_is_zero() -> None:
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    assert cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["exact", "contains", "similarity"])
def test_a_scorer_needing_expected_names_the_case_and_the_scorer(name: str) -> None:
    with pytest.raises(MissingExpected) as caught:
        score(scorer(name), "output", None, case_name="open question")
    assert caught.value.message == (
        f"case 'open question': scorer '{name}' compares with 'expected', "
        "which the case does not give"
    )


def test_a_case_scores_the_mean_and_passes_only_if_every_scorer_passes() -> None:
    scorers = [scorer("contains"), scorer("exact"), scorer({"type": "regex", "pattern": "P"})]
    verdict = score_case(scorers, "Paris!", "Paris", case_name="c")
    assert verdict.value == pytest.approx(2 / 3)
    assert not verdict.passed
    assert [(d["type"], d["passed"]) for d in verdict.scorers] == [
        ("contains", True),
        ("exact", False),
        ("regex", True),
    ]
    assert score_case(scorers[::2], "Paris!", "Paris", case_name="c").passed
