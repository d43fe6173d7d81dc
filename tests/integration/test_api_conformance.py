"""The API answers as its OpenAPI schema says: paths, methods, parameters, bodies, statuses.

Each test reads the schema the app serves (``/openapi.json``) and checks the running app
(a real libSQL file and the session's real Redis) against it, for every operation it
applies to: a new route is covered without editing this file.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import TestClient

pytestmark = pytest.mark.integration

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


@pytest.fixture
def schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _concrete(path: str) -> str:
    """A URL of the documented ``path``: each parameter filled with a made-up id."""
    return re.sub(r"\{[^/{}]+\}", "7b0e1c3a-0000-4000-8000-000000000000", path)


def test_no_two_documented_paths_are_one_path_under_other_names(schema: dict[str, Any]) -> None:
    # OpenAPI: "Templated paths with the same hierarchy but different templated names MUST
    # NOT exist as they are identical."
    shapes: dict[str, list[str]] = {}
    for path in schema["paths"]:
        shapes.setdefault(re.sub(r"\{[^/{}]+\}", "{}", path), []).append(path)
    assert [paths for paths in shapes.values() if len(paths) > 1] == []


def test_a_method_a_path_lacks_is_405_allowing_exactly_the_documented_ones(
    client: TestClient, schema: dict[str, Any]
) -> None:
    wrong: dict[str, str] = {}
    for path, item in schema["paths"].items():
        documented = ", ".join(sorted(m.upper() for m in item if m in METHODS))
        # No path documents TRACE: the request is routed to the path, with no method to run.
        response = client.request("TRACE", _concrete(path))
        assert response.status_code == 405, (path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "method_not_allowed"
        if response.headers.get("Allow") != documented:
            wrong[path] = f"Allow: {response.headers.get('Allow')}; documented: {documented}"
    assert wrong == {}


def test_every_operation_with_a_body_answers_a_documented_422_to_unreadable_bytes(
    client: TestClient, schema: dict[str, Any]
) -> None:
    unreadable = {
        "not UTF-8": (b'{"title": "\xff\xfe"}', "the body is not UTF-8 text"),
        "nested too deeply": (b"[" * 100_000, "the body is nested too deeply"),
    }
    checked = 0
    for path, method, operation in _operations(schema):
        if "requestBody" not in operation:
            continue
        assert "422" in operation["responses"], f"{method.upper()} {path} documents no 422"
        for content, reason in unreadable.values():
            response = client.request(
                method.upper(),
                _concrete(path),
                content=content,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 422, (path, response.status_code, response.text)
            body = response.json()
            assert body["error"] == {"code": "validation_error", "message": f"body: {reason}"}
            assert body["detail"] == [{"type": "json_invalid", "loc": ["body"], "msg": reason}]
            checked += 1
    assert checked >= 8  # prompts, versions, the enqueue paths: the loop was not vacuous


@pytest.mark.parametrize("value", [0, 1, "true", "false", "yes"])
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/jobs/backup", {"mode": "backup"}, "prune"),
        ("/v1/jobs/embedding", {}, "all_stale"),
    ],
)
def test_a_boolean_field_takes_only_json_booleans(
    client: TestClient, value: object, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json={**body, field: value})

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]

    response = client.post("/v1/jobs/replica-sync", json={"all": value})

    assert response.status_code == 422, response.text
    assert ["body", "all"] in [error["loc"] for error in response.json()["detail"]]


def _request_booleans(schema: dict[str, Any]) -> list[str]:
    """``Component.field`` of every boolean in a request body (through ``$ref``s)."""
    components = schema["components"]["schemas"]
    found: set[str] = set()
    seen: set[str] = set()

    def walk(node: Any, owner: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, owner)
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
            return
        for field, spec in node.get("properties", {}).items():
            types = [spec.get("type"), *(o.get("type") for o in spec.get("anyOf", []))]
            if "boolean" in types:
                found.add(f"{owner}.{field}")
        for value in node.values():
            walk(value, owner)

    for _, _, operation in _operations(schema):
        walk(operation.get("requestBody", {}), "(body)")
    return sorted(found)


def test_the_strict_boolean_test_covers_every_boolean_of_a_request(
    schema: dict[str, Any],
) -> None:
    # A new boolean in a request body belongs in the test above.
    assert _request_booleans(schema) == [
        "BackupArguments.prune",
        "EmbeddingArguments.all_stale",
        "ReplicaSyncArguments.all",
    ]


def test_the_cursor_is_documented_as_the_api_checks_it(schema: dict[str, Any]) -> None:
    [cursor] = [
        p for p in schema["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "cursor"
    ]
    [text] = [option for option in cursor["schema"]["anyOf"] if option.get("type") == "string"]
    assert (text["minLength"], text["maxLength"]) == (1, 200)


@pytest.mark.parametrize(
    "position",
    [
        "0001-01-01T00:00:00+01:00|7b0e1c3a",  # one hour before year 1 in UTC
        "9999-12-31T23:59:59-01:00|7b0e1c3a",  # one hour after year 9999 in UTC
    ],
)
def test_a_cursor_outside_the_datetime_range_is_422(client: TestClient, position: str) -> None:
    cursor = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")

    response = client.get("/v1/jobs", params={"cursor": cursor})

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", "cursor"]]


def test_nan_in_prompt_metadata_is_422_naming_the_key(client: TestClient) -> None:
    # Python's JSON reader accepts NaN; JSON has no such number, so nothing may store one.
    body = json.dumps(
        {"title": "t", "content": "c", "user_id": "u", "meta_data": {"score": 1.5}}
    ).replace("1.5", "NaN")

    response = client.post(
        "/v1/prompts", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert [error["loc"][:3] for error in response.json()["detail"]] == [
        ["body", "meta_data", "score"]
    ]


def test_a_missing_body_is_answered_as_the_schema_says(
    client: TestClient, schema: dict[str, Any]
) -> None:
    """A body the schema requires is a documented 422 when missing; one it does not
    require is never the reason for a 422 (the operation may still refuse made-up ids)."""
    answers = {}
    for path, method, operation in _operations(schema):
        if "requestBody" not in operation:
            continue
        response = client.request(method.upper(), _concrete(path))
        answers[f"{method.upper()} {path}"] = (
            bool(operation["requestBody"].get("required")),
            response.status_code,
            [
                (error["type"], error["loc"])
                for error in (response.json()["detail"] if response.status_code == 422 else [])
            ],
        )
    wrong = {
        where: answer
        for where, answer in answers.items()
        if answer[0] != (answer[1] == 422 and answer[2] == [("missing", ["body"])])
    }
    assert wrong == {}, answers
    assert len(answers) >= 4  # the loop was not vacuous


def test_an_empty_cursor_is_refused_as_its_documented_min_length_says(client: TestClient) -> None:
    response = client.get("/v1/jobs", params={"cursor": ""})

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", "cursor"]]
