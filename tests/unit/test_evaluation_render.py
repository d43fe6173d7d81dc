"""Templates: ``{{ name }}`` placeholders, never code; misfits name the variable and the case."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from core.errors import PermanentError
from tasks.evaluation.render import (
    TemplateError,
    check_cases,
    find_placeholders,
    render,
    render_prompt,
)
from tasks.evaluation.spec import TestCase


def make_case(name: str, variables: dict[str, object]) -> TestCase:
    return TestCase.model_validate(
        {"name": name, "variables": variables, "expected": "x", "scorers": ["exact"]}
    )


def test_placeholders_with_and_without_spaces() -> None:
    template = "{{a}} {{ b }} {{   c\t}} {{a}} {{ 名前 }}"
    assert find_placeholders(template) == {"a", "b", "c", "名前"}
    assert (
        render(template, {"a": "1", "b": 2, "c": 3.5, "名前": "太郎"}, case_name="t")
        == "1 2 3.5 1 太郎"
    )


def test_booleans_render_as_json() -> None:
    assert render("{{ yes }}/{{ no }}", {"yes": True, "no": False}, case_name="t") == "true/false"


def test_a_missing_variable_names_the_variable_and_the_case() -> None:
    with pytest.raises(TemplateError) as caught:
        render("Hello {{ name }}, from {{ city }}", {"name": "Ada"}, case_name="greeting")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.message == (
        "template does not fit the test cases: case 'greeting': no value for placeholder(s) 'city'"
    )


def test_an_unused_variable_names_the_variable_and_the_case() -> None:
    with pytest.raises(TemplateError) as caught:
        render("Hello {{ name }}", {"name": "Ada", "nmae": "typo"}, case_name="greeting")
    assert caught.value.message.endswith(
        "case 'greeting': variable(s) 'nmae' not used by the template"
    )


def test_values_are_inserted_once_and_never_rendered_again() -> None:
    assert render("{{ a }}", {"a": "{{ a }} and {{ b }}"}, case_name="t") == "{{ a }} and {{ b }}"


@pytest.mark.parametrize(
    "expression",
    [
        "{{ __import__('os').system('touch pwned') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ a.b }}",
        "{{ 1 + 1 }}",
        "{% for x in y %}{{ x }}{% endfor %}",
        "${a} {a} %(a)s",
    ],
)
def test_nothing_but_a_plain_name_is_a_placeholder_and_no_code_runs(
    expression: str, tmp_path: Path
) -> None:
    template = f"before {expression} after"
    names = find_placeholders(template)
    variables = dict.fromkeys(names, "X")
    rendered = render(template, variables, case_name="t")
    # Only real placeholders ({{ x }} in the Jinja loop) change; the rest stays as written.
    assert rendered == template.replace("{{ x }}", "X")
    assert not (tmp_path / "pwned").exists()  # the test runs in tmp_path (conftest)


def test_a_prompt_written_for_str_format_keeps_its_double_braces() -> None:
    template = 'Answer as JSON like {{"city": "Paris"}} about {{ topic }}'
    assert find_placeholders(template) == {"topic"}
    assert (
        render(template, {"topic": "France"}, case_name="t")
        == 'Answer as JSON like {{"city": "Paris"}} about France'
    )


def test_the_system_message_is_a_template_too() -> None:
    rendered = render_prompt(
        "Translate {{ text }}",
        "You answer in {{ language }}.",
        {"text": "hi", "language": "ja"},
        case_name="t",
    )
    assert rendered.user == "Translate hi"
    assert rendered.system == "You answer in ja."
    assert render_prompt("{{ a }}", None, {"a": 1}, case_name="t").system is None
    with pytest.raises(TemplateError, match="no value for placeholder\\(s\\) 'language'"):
        render_prompt("{{ text }}", "in {{ language }}", {"text": "x"}, case_name="t")


def test_check_cases_reports_every_case_that_does_not_fit() -> None:
    cases = [
        make_case("ok", {"a": 1}),
        make_case("bad1", {}),
        make_case("bad2", {"a": 1, "b": 2}),
    ]
    with pytest.raises(TemplateError) as caught:
        check_cases("{{ a }}", cases)
    assert [p.case_name for p in caught.value.problems] == ["bad1", "bad2"]
    assert caught.value.problems[0].missing == ("a",)
    assert caught.value.problems[1].unused == ("b",)
    assert "case 'bad1'" in caught.value.message
    assert "case 'bad2'" in caught.value.message
    check_cases("{{ a }}", cases[:1])  # no error


def test_a_long_list_of_problems_is_shortened_in_the_message_only() -> None:
    cases = [make_case(f"c{i}", {}) for i in range(25)]
    with pytest.raises(TemplateError) as caught:
        check_cases("{{ a }}", cases)
    assert len(caught.value.problems) == 25
    assert caught.value.message.endswith("and 15 more case(s)")


def test_the_error_rebuilds_from_its_message() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{ a }}", {}, case_name="c")
    rebuilt = TemplateError(*caught.value.args)
    assert str(rebuilt) == str(caught.value)
    assert copy.deepcopy(caught.value).problems == caught.value.problems
