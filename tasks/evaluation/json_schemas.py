"""JSON Schemas from users, checked and applied with their patterns run by RE2.

The ``jsonschema`` library runs a schema's ``pattern`` and ``patternProperties`` with
Python's ``re``, which backtracks: ``{"pattern": "(a+)+$"}`` against a string of 30 ``a``
and one other character keeps a worker in one call, holding the GIL, for hours (see
:mod:`tasks.evaluation.patterns`). Here both keywords run on RE2 instead, so a schema is
applied in time linear in the document, whatever its patterns.

That holds only for the validator classes built here. ``jsonschema`` switches to its own
class for a subschema that names a dialect (``$schema``), so a ``$schema`` anywhere but
at the root is refused, like a pattern RE2 cannot run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import jsonschema.protocols
import referencing
import referencing.exceptions

from core.errors import PermanentError
from tasks.evaluation.patterns import UnusablePattern, compile_pattern


class UnusableSchema(PermanentError):
    """The schema is not a JSON Schema this scorer can apply.

    The message is what is wrong with it, said of the schema ("is not a JSON Schema at
    properties/age: ..."): callers put "the schema" or the field's name before it.
    """


def check_schema(schema: dict[str, Any], *, patterns: bool = True) -> None:
    """Raise :class:`UnusableSchema` unless ``schema`` is a JSON Schema that RE2 can apply.

    Checked against its dialect's meta-schema, with every ``pattern`` and every
    ``patternProperties`` name compiled by RE2 (the meta-schemas mark both as regular
    expressions, so exactly these are compiled, wherever they are). ``patterns=False``
    checks only the schema itself, as before patterns were checked (a stored job's
    arguments): :func:`schema_errors` then refuses what RE2 cannot run.
    """
    base: Any = jsonschema.validators.validator_for(schema)  # check_schema's typing lags
    if patterns:
        _refuse_nested_dialects(schema)
    try:
        if patterns:
            base.check_schema(schema, format_checker=_format_checker(base))
        else:
            base.check_schema(schema)
    except jsonschema.SchemaError as exc:
        refused = _refused_pattern(exc)
        if refused is not None:
            path, cause = refused
            raise UnusableSchema(f"has a pattern at {path} that {_lowered(cause)}") from None
        raise UnusableSchema(f"is not a JSON Schema at {_path(exc)}: {exc.message}") from None


def schema_errors(schema: dict[str, Any], document: Any) -> list[jsonschema.ValidationError]:
    """Where ``document`` does not match ``schema``, in document order.

    Patterns run on RE2; a ``$ref`` is never fetched (an empty registry). Raises
    :class:`UnusableSchema` for a schema this scorer cannot apply: one that
    :func:`check_schema` refuses (a stored job's may hold a pattern RE2 cannot run), or
    one with a ``$ref`` it does not hold.
    """
    check_schema(schema)  # refused as a whole, whatever the document reaches
    validator = _re2_validator(jsonschema.validators.validator_for(schema))(
        schema, registry=referencing.Registry()
    )
    try:
        return sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    except referencing.exceptions.Unresolvable as exc:
        raise UnusableSchema(f"refers to what it does not contain: {exc}") from None
    except UnusablePattern as exc:
        raise UnusableSchema(f"has a pattern that {_lowered(exc.message)}") from None


def _refuse_nested_dialects(schema: dict[str, Any]) -> None:
    for path in _nested_dialects(schema, ()):
        where = "/".join(path)
        raise UnusableSchema(f"names a dialect ($schema) at {where}: only its root may")


def _refused_pattern(
    error: jsonschema.SchemaError | jsonschema.ValidationError,
) -> tuple[str, str] | None:
    """Where a pattern RE2 refused is, and why, even under an ``anyOf`` of the meta-schema."""
    if isinstance(error.cause, UnusablePattern):
        return _path(error), error.cause.message
    for inner in error.context or ():
        found = _refused_pattern(inner)
        if found is not None:
            return found
    return None


def _path(error: jsonschema.SchemaError | jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(root)"


def _lowered(message: str) -> str:
    """The message "RE2 cannot use this pattern: ..." as the end of a sentence."""
    return message.replace("RE2 cannot use this pattern", "RE2 cannot use", 1)


def _nested_dialects(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "$schema" and path:
                yield (*path, key)
            yield from _nested_dialects(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nested_dialects(item, (*path, str(index)))


def _is_re2_pattern(instance: object) -> bool:
    if isinstance(instance, str):
        compile_pattern(instance)  # raises UnusablePattern, the format checker's ``raises``
    return True


@functools.cache
def _format_checker(base: type[jsonschema.protocols.Validator]) -> jsonschema.FormatChecker:
    """The dialect's own format checker, with ``regex`` meaning "RE2 can run it"."""
    checker = jsonschema.FormatChecker()
    checker.checkers = dict(base.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=UnusablePattern)(_is_re2_pattern)
    return checker


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and compile_pattern(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any,
    pattern_properties: Mapping[str, Any],
    instance: Any,
    schema: Any,
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        compiled = compile_pattern(pattern)
        for key, value in instance.items():
            if compiled.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


@functools.cache
def _re2_validator(
    base: type[jsonschema.protocols.Validator],
) -> type[jsonschema.protocols.Validator]:
    """``base`` with ``pattern`` and ``patternProperties`` run by RE2."""
    extend: Any = jsonschema.validators.extend  # untyped in the library
    validator: type[jsonschema.protocols.Validator] = extend(
        base, {"pattern": _pattern, "patternProperties": _pattern_properties}
    )
    return validator
