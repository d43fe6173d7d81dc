"""Prompt templates: ``{{ name }}`` placeholders filled by a regular expression.

Nothing here executes code: no Jinja, no ``eval``, no ``str.format`` (whose attribute and
index lookups reach into objects). A placeholder is ``{{``, optional spaces, a name, optional
spaces, ``}}``; a name is a Unicode identifier (``topic``, ``user_name``, ``名前``). Anything
else between double braces, such as ``{{ __import__('os') }}`` or the ``{{"a": 1}}`` of a
prompt written for ``str.format``, is not a placeholder and stays as it is.

Variables and placeholders must match exactly: a placeholder without a variable, or a
variable that no placeholder uses (usually a typo), is a :class:`TemplateError`. A prompt's
system message is a template too: a variable counts as used if either text uses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from core.errors import PermanentError

#: A variable's name: a letter or underscore, then letters, digits or underscores (Unicode).
NAME_PATTERN = r"[^\W\d]\w*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + NAME_PATTERN + r")\s*\}\}")
_NAME = re.compile(NAME_PATTERN)

#: What a variable's value may be (JSON scalars other than null).
VariableValue = str | int | float | bool

# A message names at most this many cases; the error keeps all of them in ``problems``.
_MAX_CASES_IN_MESSAGE = 10


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """What does not fit between the template and one case's variables."""

    case_name: str
    missing: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"no value for placeholder(s) {_names(self.missing)}")
        if self.unused:
            parts.append(f"variable(s) {_names(self.unused)} not used by the template")
        return f"case {self.case_name!r}: " + " and ".join(parts)


class TemplateError(PermanentError):
    """The prompt template and a test case's variables do not fit."""

    def __init__(
        self, message: str | None = None, *, problems: Iterable[TemplateProblem] = ()
    ) -> None:
        # The message comes first, alone in ``args``, so the error rebuilds from it.
        super().__init__(message)
        self.problems: tuple[TemplateProblem, ...] = tuple(problems)

    @classmethod
    def of(cls, problems: Iterable[TemplateProblem]) -> TemplateError:
        """The error listing ``problems`` (the message names at most ten cases)."""
        problems = tuple(problems)
        shown = [p.describe() for p in problems[:_MAX_CASES_IN_MESSAGE]]
        hidden = len(problems) - len(shown)
        if hidden:
            shown.append(f"and {hidden} more case(s)")
        message = "template does not fit the test cases: " + "; ".join(shown)
        return cls(message, problems=problems)


class CaseVariables(Protocol):
    """What :func:`check_cases` needs of a test case (``spec.TestCase`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def variables(self) -> Mapping[str, VariableValue]: ...


def is_variable_name(name: str) -> bool:
    """Whether ``name`` can appear in a placeholder."""
    return _NAME.fullmatch(name) is not None


def find_placeholders(template: str) -> set[str]:
    """The names of the placeholders in ``template``."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(template)}


def problem_for(
    templates: Iterable[str | None], variables: Mapping[str, object], *, case_name: str
) -> TemplateProblem | None:
    """What does not fit between the ``templates`` (taken together) and ``variables``."""
    used = set().union(*(find_placeholders(t) for t in templates if t is not None))
    missing = tuple(sorted(used - variables.keys()))
    unused = tuple(sorted(variables.keys() - used))
    if missing or unused:
        return TemplateProblem(case_name=case_name, missing=missing, unused=unused)
    return None


def render(template: str, variables: Mapping[str, VariableValue], *, case_name: str) -> str:
    """``template`` with every placeholder replaced by its variable's value.

    Values are inserted once, as text: a value that itself looks like a placeholder is not
    rendered again. Booleans render as JSON (``true``/``false``), numbers as Python prints
    them. Raises :class:`TemplateError` naming the case and the variables that do not fit.
    """
    problem = problem_for([template], variables, case_name=case_name)
    if problem is not None:
        raise TemplateError.of([problem])
    return _fill(template, variables)


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt filled in for one case: the user message and the system message, if any."""

    user: str
    system: str | None = None


def render_prompt(
    content: str,
    system_message: str | None,
    variables: Mapping[str, VariableValue],
    *,
    case_name: str,
) -> RenderedPrompt:
    """Render a prompt's content and system message with one case's variables.

    Like :func:`render`, but a variable counts as used if either text uses it.
    """
    problem = problem_for([content, system_message], variables, case_name=case_name)
    if problem is not None:
        raise TemplateError.of([problem])
    return RenderedPrompt(
        user=_fill(content, variables),
        system=None if system_message is None else _fill(system_message, variables),
    )


def check_cases(
    template: str, cases: Iterable[CaseVariables], *, system_message: str | None = None
) -> None:
    """Check every case against ``template`` (and ``system_message``) before anything runs.

    Raises one :class:`TemplateError` listing every case that does not fit, so the API can
    answer 422 before a job is queued.
    """
    problems = [
        problem
        for case in cases
        if (problem := problem_for([template, system_message], case.variables, case_name=case.name))
        is not None
    ]
    if problems:
        raise TemplateError.of(problems)


def _fill(template: str, variables: Mapping[str, VariableValue]) -> str:
    # One pass with a function: values are inserted verbatim, never rendered again.
    return _PLACEHOLDER.sub(lambda match: _as_text(variables[match.group(1)]), template)


def _as_text(value: VariableValue) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
