"""The evaluation request: what it accepts, and errors that name the field and the case."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidData
from tasks.evaluation.spec import (
    ContainsScorer,
    EvaluationSpec,
    ExactScorer,
    JsonValidScorer,
    RegexScorer,
    SimilarityScorer,
    describe_validation_error,
    parse_spec,
)


def request(*cases: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_id": "3f1c1a52-5d43-4b8e-9c1e-0d9b6f7d2a11",
        "provider": "echo",
        "model": "echo-1",
        "test_cases": list(cases)
        or [
            {
                "name": "greeting",
                "variables": {"who": "Ada"},
                "expected": "Hi",
                "scorers": ["exact"],
            }
        ],
    }
    body.update(fields)
    return body


def case(name: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"name": name, "variables": {}, "expected": "x", "scorers": ["exact"], **fields}


def problems_of(body: dict[str, Any]) -> str:
    with pytest.raises(InvalidData) as caught:
        parse_spec(body)
    return caught.value.message


def test_a_full_request_is_accepted_with_defaults() -> None:
    spec = parse_spec(request())
    assert spec.threshold == 0.5
    assert spec.error_policy == "record"
    assert spec.temperature is None
    assert spec.max_tokens is None
    assert spec.test_cases[0].variables == {"who": "Ada"}


def test_scorer_names_are_shorthand_and_objects_carry_parameters() -> None:
    spec = parse_spec(
        request(
            case(
                scorers=[
                    "exact",
                    "contains",
                    "json_valid",
                    "similarity",
                    {"type": "regex", "pattern": r"\d+"},
                    {"type": "json_valid", "schema": {"type": "object"}},
                    {"type": "similarity", "threshold": 0.9},
                ]
            )
        )
    )
    scorers = spec.test_cases[0].scorers
    assert [type(s) for s in scorers] == [
        ExactScorer,
        ContainsScorer,
        JsonValidScorer,
        SimilarityScorer,
        RegexScorer,
        JsonValidScorer,
        SimilarityScorer,
    ]
    assert isinstance(scorers[4], RegexScorer)
    assert scorers[4].pattern == r"\d+"
    assert isinstance(scorers[5], JsonValidScorer)
    assert scorers[5].json_schema == {"type": "object"}
    assert isinstance(scorers[6], SimilarityScorer)
    assert scorers[6].threshold == 0.9
    assert spec.scorer_types() == {"exact", "contains", "json_valid", "similarity", "regex"}


def test_the_spec_round_trips_through_json_as_the_job_arguments() -> None:
    spec = parse_spec(
        request(
            case(
                variables={"n": 3, "ok": True, "x": 1.5, "s": "t"},
                scorers=["exact", {"type": "json_valid", "schema": {"type": "object"}}],
            ),
            temperature=0.2,
            max_tokens=64,
            threshold=0.75,
            error_policy="fail",
        )
    )
    dumped = spec.model_dump(mode="json")
    assert dumped["test_cases"][0]["scorers"][1] == {
        "type": "json_valid",
        "schema": {"type": "object"},
    }
    assert dumped["test_cases"][0]["variables"] == {"n": 3, "ok": True, "x": 1.5, "s": "t"}
    assert EvaluationSpec.model_validate(dumped) == spec


def request_problems(body: dict[str, Any]) -> str:
    """What the API says of ``body``: it validates requests without a context."""
    with pytest.raises(ValidationError) as caught:
        EvaluationSpec.model_validate(body)
    return describe_validation_error(caught.value, body)


def test_an_invalid_regex_names_the_case_and_the_field() -> None:
    message = request_problems(
        request(case("dates", scorers=["exact", {"type": "regex", "pattern": "[0-9"}]))
    )
    assert message.startswith("test_cases.0.scorers.1.regex.pattern (case 'dates'): ")
    assert "RE2 cannot use this pattern: missing ]: [0-9" in message


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"x(?=y)", "invalid perl operator: (?="),
        (r"(?<=a)b", "invalid perl operator: (?<="),
        (r"a++", "bad repetition operator: ++"),
        (r"\pL{1000}", "pattern too large - compile failed"),
        ("a{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_a_request_with_a_pattern_re2_cannot_run_is_refused_with_the_reason(
    pattern: str, reason: str
) -> None:
    body = request(case("c", scorers=[{"type": "regex", "pattern": pattern}]))
    message = request_problems(body)
    assert message.startswith("test_cases.0.scorers.0.regex.pattern (case 'c'): ")
    assert reason in message
    # Stored arguments are read without that check: the scorer reports it per case.
    stored = parse_spec(body).test_cases[0].scorers[0]
    assert isinstance(stored, RegexScorer)
    assert stored.pattern == pattern


def test_patterns_use_re2_syntax() -> None:
    body = request(case(scorers=[{"type": "regex", "pattern": r"(?P<word>\p{L}+) [[:digit:]]\z"}]))
    assert EvaluationSpec.model_validate(body).test_cases[0].scorers[0] == RegexScorer(
        pattern=r"(?P<word>\p{L}+) [[:digit:]]\z"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_in_variables(value: float) -> None:
    body = request(case("v", variables={"x": 1.5, "y": value}))
    message = request_problems(body)
    assert message == "test_cases.0.variables.y (case 'v'): NaN and Infinity are not JSON numbers"
    # Arguments stored before the check still read back (and run).
    assert parse_spec(body).test_cases[0].variables["x"] == 1.5


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_in_a_json_schema(value: float) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "maximum": value}}}
    body = request(case("s", scorers=[{"type": "json_valid", "schema": schema}]))
    assert request_problems(body) == (
        "test_cases.0.scorers.0.json_valid.schema (case 's'): "
        "NaN and Infinity are not JSON numbers; found at properties/n/maximum"
    )
    assert len(parse_spec(body).test_cases) == 1


def test_an_invalid_json_schema_names_the_case_and_where_in_the_schema() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integr"}}}
    message = problems_of(
        request(case("person", scorers=[{"type": "json_valid", "schema": schema}]))
    )
    assert "case 'person'" in message
    assert "scorers[0] (json_valid).schema is not a JSON Schema at properties/age/type" in message


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            {"properties": {"id": {"pattern": "(?<=#)\\d+"}}},
            "has a pattern at properties/id/pattern that RE2 cannot use: invalid perl operator",
        ),
        (
            {"patternProperties": {"(a)\\1": {}}},
            "has a pattern at patternProperties that RE2 cannot use: invalid escape sequence",
        ),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "items": {"pattern": "a(?!b)"}},
            "has a pattern at items/pattern that RE2 cannot use: invalid perl operator",
        ),
        (
            {"properties": {"n": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
            "names a dialect ($schema) at properties/n/$schema: only its root may",
        ),
    ],
)
def test_a_json_schema_whose_patterns_re2_cannot_run_is_refused_naming_where(
    schema: dict[str, Any], problem: str
) -> None:
    message = request_problems(
        request(case("person", scorers=[{"type": "json_valid", "schema": schema}]))
    )
    assert f"case 'person': scorers[0] (json_valid).schema {problem}" in message


def test_a_stored_json_schema_is_read_without_the_pattern_check() -> None:
    schema = {"type": "string", "pattern": "x(?=y)"}
    body = request(case("person", scorers=[{"type": "json_valid", "schema": schema}]))
    assert len(parse_spec(body).test_cases) == 1
    assert "RE2 cannot use" in request_problems(body)


def test_duplicate_case_names_are_named() -> None:
    message = problems_of(request(case("same"), case("other"), case("same")))
    assert message.endswith("test_cases: test case names must be unique in a run; repeated: 'same'")


def test_case_names_are_compared_without_surrounding_whitespace() -> None:
    assert "repeated: 'same'" in problems_of(request(case("same"), case("  same ")))


def test_a_scorer_that_needs_expected_is_refused_without_it() -> None:
    message = problems_of(
        request(
            case("open", expected=None, scorers=[{"type": "regex", "pattern": "a"}, "contains"])
        )
    )
    assert "case 'open': scorers[1] (contains) compares with 'expected'" in message


def test_regex_and_json_valid_need_no_expected() -> None:
    spec = parse_spec(
        request(case(expected=None, scorers=["json_valid", {"type": "regex", "pattern": "a"}]))
    )
    assert spec.test_cases[0].expected is None


@pytest.mark.parametrize(
    ("scorer", "path", "fragment"),
    [
        ("nope", "test_cases.0.scorers.0 (case 'c1')", "does not match any of the expected tags"),
        ("regex", "test_cases.0.scorers.0.regex.pattern (case 'c1')", "Field required"),
        (
            {"type": "similarity", "threshold": 1.5},
            "test_cases.0.scorers.0.similarity.threshold (case 'c1')",
            "less than or equal to 1",
        ),
        (
            {"type": "exact", "pattern": "x"},
            "test_cases.0.scorers.0.exact.pattern (case 'c1')",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_scorer_errors_name_the_path_and_the_case(scorer: object, path: str, fragment: str) -> None:
    message = problems_of(request(case(scorers=[scorer])))
    assert f"{path}: " in message
    assert fragment in message


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 32769}, "max_tokens"),
        ({"threshold": 1.01}, "threshold"),
        ({"error_policy": "ignore"}, "error_policy"),
        ({"test_cases": []}, "test_cases"),
        ({"provider": ""}, "provider"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_request_fields_are_bounded(fields: dict[str, Any], path: str) -> None:
    assert problems_of(request(**fields)).startswith(f"invalid evaluation request: {path}: ")


def test_at_most_500_cases() -> None:
    cases = [case(f"c{i}") for i in range(501)]
    assert "test_cases: List should have at most 500 items" in problems_of(request(*cases))
    assert len(parse_spec(request(*cases[:500])).test_cases) == 500


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("", "at least 1 character"), ("x" * 256, "at most 255 characters")],
)
def test_case_names_are_1_to_255_characters(name: str, fragment: str) -> None:
    message = problems_of(request(case(name)))
    assert "test_cases.0.name: " in message
    assert fragment in message


def test_variable_names_must_fit_a_placeholder_and_values_be_scalars() -> None:
    message = problems_of(request(case("v", variables={"2nd": "x"})))
    assert "test_cases.0.variables.2nd.[key] (case 'v')" in message
    assert "variable name '2nd' cannot appear in a placeholder" in message
    message = problems_of(request(case("v", variables={"x": ["a"]})))
    assert "test_cases.0.variables.x" in message
    assert "(case 'v')" in message


def test_unicode_variable_names_are_accepted() -> None:
    spec = parse_spec(request(case(variables={"名前": "太郎"})))
    assert spec.test_cases[0].variables == {"名前": "太郎"}


def test_the_pydantic_error_carries_the_field_path_for_the_api() -> None:
    with pytest.raises(ValidationError) as caught:
        EvaluationSpec.model_validate(request(case(scorers=[{"type": "regex", "pattern": "("}])))
    [error] = caught.value.errors()
    assert error["loc"] == ("test_cases", 0, "scorers", 0, "regex", "pattern")
    assert "missing )" in error["msg"]
