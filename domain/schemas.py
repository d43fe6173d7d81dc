"""Shapes of the JSON columns, validated at the repository boundary (seed section 2.2).

A value that does not fit is rejected with :class:`db.errors.InvalidData` naming the
field, and never stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from core.errors import InvalidData

M = TypeVar("M", bound=BaseModel)

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetaValue = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptTags(_Strict):
    """``prompts.tags``: PromptTagsSchema of the review."""

    category: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] = "ja"
    custom_tags: Annotated[list[Tag], Field(max_length=50)] = Field(default_factory=list)


class PromptMetadata(BaseModel):
    """``prompts.meta_data``: a flat map of string keys to JSON scalars (at most 100)."""

    model_config = ConfigDict(frozen=True)

    values: Annotated[dict[MetaKey, MetaValue], Field(max_length=100)] = Field(default_factory=dict)


class EvaluationMetrics(_Strict):
    """``evaluations.metrics``: aggregate numbers of one evaluation run."""

    total_cases: int = Field(0, ge=0)
    passed_cases: int = Field(0, ge=0)
    failed_cases: int = Field(0, ge=0)
    errored_cases: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    mean_latency_ms: float | None = Field(None, ge=0)
    threshold: float | None = Field(None, ge=0, le=1)
    passed: bool | None = None  # overall score reached the threshold


def _non_finite_numbers(value: object, path: tuple[str, ...] = ()) -> list[str]:
    """Where ``value`` holds NaN or an infinity (which Python's JSON reader lets in)."""
    if isinstance(value, float) and not math.isfinite(value):
        return ["/".join(path) or "(root)"]
    if isinstance(value, Mapping):
        return [
            found
            for key, item in value.items()
            for found in _non_finite_numbers(item, (*path, str(key)))
        ]
    if isinstance(value, list | tuple):
        return [
            found
            for index, item in enumerate(value)
            for found in _non_finite_numbers(item, (*path, str(index)))
        ]
    return []


def json_numbers_only(value: Any) -> Any:
    """``value``, if it holds no NaN or infinity (a validator: else a ``ValueError`` naming
    where, as a path in ``value``)."""
    places = _non_finite_numbers(value)
    if places == ["(root)"]:
        raise ValueError("NaN and Infinity are not JSON numbers")
    if places:
        raise ValueError(f"NaN and Infinity are not JSON numbers; found at {', '.join(places)}")
    return value


#: A value of ``prompts.meta_data`` as a request gives it: a number must be one JSON has.
FiniteMetaValue = Annotated[MetaValue, AfterValidator(json_numbers_only)]


def validated_json(model: type[M], value: object, *, column: str) -> M:
    """``value`` (a model instance or plain JSON data) checked against ``model``.

    Raises :class:`InvalidData` naming the column and the offending field.
    """
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([column, *(str(p) for p in err['loc'])])}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidData(f"invalid JSON for {column}: {problems}") from None
