"""The OpenAPI document: the API's real 422 shape on every operation that takes input, an
example for every request body, and docs pages that load nothing from another host."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api.app import create_app
from api.openapi import VALIDATION_ERROR_EXAMPLE, request_examples
from api.schemas import ValidationErrorBody
from tasks.registry import kind_registry
from tests.conftest import make_settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

VALIDATION_REF = "#/components/schemas/ValidationErrorBody"


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    # Nothing here starts the lifespan: no database or Redis is opened.
    return create_app(make_settings(tmp_path / "x.db"))


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_operation_that_takes_input_documents_the_apis_422(app: FastAPI) -> None:
    document = app.openapi()

    with_input = [
        (method, path, op)
        for method, path, op in _operations(document)
        if op.get("parameters") or op.get("requestBody")
    ]
    assert len(with_input) >= 14
    for method, path, operation in with_input:
        refused = operation["responses"].get("422")
        assert refused is not None, f"{method} {path} does not document its 422"
        content = refused["content"]["application/json"]
        assert content["schema"] == {"$ref": VALIDATION_REF}, f"{method} {path}"
        assert content["example"] == VALIDATION_ERROR_EXAMPLE
    for method, path, operation in _operations(document):
        if not (operation.get("parameters") or operation.get("requestBody")):
            # Nothing to refuse: a 422 there would be a lie.
            assert "422" not in operation["responses"], f"{method} {path}"


def test_the_documented_422_is_the_shape_the_api_answers_with(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]

    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    body = schemas["ValidationErrorBody"]
    assert body["required"] == ["error"]
    assert body["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    issue = schemas["ValidationIssue"]
    assert set(issue["required"]) == {"type", "loc", "msg"}
    # The example is itself a valid body.
    ValidationErrorBody.model_validate(VALIDATION_ERROR_EXAMPLE)


def test_every_request_body_has_an_example_its_model_accepts(app: FastAPI) -> None:
    document = app.openapi()
    models = {model.__name__: model for model in request_examples(kind_registry())}

    bodies = [
        (method, path, op["requestBody"]["content"]["application/json"])
        for method, path, op in _operations(document)
        if "requestBody" in op
    ]
    assert len(bodies) >= 5
    for method, path, body in bodies:
        assert "example" in body, f"{method} {path}: its request body has no example"
        name = body["schema"]["$ref"].rsplit("/", 1)[1]
        models[name].model_validate(body["example"])


def test_the_docs_pages_load_their_assets_from_this_api(app: FastAPI) -> None:
    client = TestClient(app)

    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            assert client.get(asset).status_code == 200, asset
