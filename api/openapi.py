"""The OpenAPI document: FastAPI's, telling the truth about 422s and showing an example body.

FastAPI documents every ``422`` with its own ``HTTPValidationError``; this API answers
with its one error shape instead (:func:`api.errors.error_response`), so each ``422`` is
documented as :class:`api.schemas.ValidationErrorBody`. Every request body carries an
example: the API's own are kept here, each job kind's is in its declaration
(``tasks/<kind>/kind.py``); a new body without one fails ``tests/unit/test_openapi.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.routes.jobs import batch_body
from api.schemas import PromptCreate, PromptVersionCreate, ValidationErrorBody
from jobs.registry import KindRegistry

REF_PREFIX = "#/components/schemas/"
# FastAPI's own validation error models, replaced by ours.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

VALIDATION_ERROR_EXAMPLE: dict[str, Any] = {
    "error": {"code": "validation_error", "message": "body.title: Field required"},
    "detail": [{"type": "missing", "loc": ["body", "title"], "msg": "Field required", "input": {}}],
}

#: An example of each of the API's own request bodies, by model.
REQUEST_EXAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    PromptCreate: {
        "title": "greeting",
        "content": "Say hello to {{ name }} in {{ lang }}.",
        "user_id": "demo",
        "system_message": "You are a polite assistant.",
        "status": "draft",
    },
    PromptVersionCreate: {
        "content": "Say a warm hello to {{ name }} in {{ lang }}.",
        "title": "greeting, warmer",
    },
}


def request_examples(kinds: KindRegistry) -> dict[type[BaseModel], dict[str, Any]]:
    """An example of every request body: the API's own and each job kind's (alone and
    as a batch of one)."""
    return {
        **REQUEST_EXAMPLES,
        **{kind.arguments: dict(kind.example) for kind in kinds},
        **{batch_body(kind): {"items": [dict(kind.example)]} for kind in kinds.enabled()},
    }


def install_openapi(app: FastAPI, kinds: KindRegistry) -> None:
    """Make ``app`` serve the corrected document at its ``openapi_url`` (built once)."""
    examples = request_examples(kinds)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = corrected(document, examples)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(
    document: dict[str, Any], request_examples: dict[type[BaseModel], dict[str, Any]]
) -> dict[str, Any]:
    """``document`` with the API's 422 shape and request examples (changed in place)."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    body_schema = ValidationErrorBody.model_json_schema(ref_template=REF_PREFIX + "{model}")
    schemas.update(body_schema.pop("$defs", {}))
    schemas[ValidationErrorBody.__name__] = body_schema
    examples = {model.__name__: example for model, example in request_examples.items()}

    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            # FastAPI adds a 422 to every operation with parameters or a body: exactly those
            # that can be refused as invalid.
            if "422" in responses:
                responses["422"] = {
                    "description": "The request is not valid; `detail[].loc` names the field.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF_PREFIX + ValidationErrorBody.__name__},
                            "example": VALIDATION_ERROR_EXAMPLE,
                        }
                    },
                }
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                name = body.get("schema", {}).get("$ref", "").removeprefix(REF_PREFIX)
                if name in examples:
                    body["example"] = examples[name]
    return document
