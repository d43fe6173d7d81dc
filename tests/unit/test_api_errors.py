"""Error answers and the body-size limit, on small apps without any service.

Each error of the closed tree maps to one status and the API's JSON error shape.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from core.errors import AutoforgeError, InvalidData, NotFound, PermanentError, TransientError
from db.errors import CheckViolation, DatabaseBusy, DatabaseUnavailable, QueryError, UniqueViolation
from jobs.outbox import IdempotencyConflict

ERRORS: dict[str, AutoforgeError] = {
    "not-found": NotFound("no such thing"),
    "invalid": InvalidData("invalid JSON for tags: tags.category: Field required"),
    "idempotency": IdempotencyConflict(),
    "check": CheckViolation("CHECK constraint failed: ck_prompts_status"),
    "unique": UniqueViolation("UNIQUE constraint failed: jobs.idempotency_key"),
    "busy": DatabaseBusy("database is locked"),
    "unavailable": DatabaseUnavailable("database unavailable: connection refused to db.internal"),
    "transient": TransientError("upstream hiccup"),
    "query": QueryError("no such table: jobs"),
    "permanent": PermanentError("a bug"),
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    def raise_error(name: str) -> None:
        raise ERRORS[name]

    @app.post("/echo")
    def echo(body: dict[str, int]) -> dict[str, int]:
        return body

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("not-found", 404, "not_found"),
        ("invalid", 422, "invalid_data"),
        ("idempotency", 409, "idempotency_conflict"),
        ("check", 409, "constraint_violation"),
        ("unique", 409, "constraint_violation"),
        ("busy", 503, "database_busy"),
        ("unavailable", 503, "database_unavailable"),
        ("transient", 503, "temporarily_unavailable"),
        ("query", 500, "internal_error"),
        ("permanent", 500, "internal_error"),
    ],
)
def test_closed_tree_maps_to_statuses(
    client: TestClient, name: str, status: int, code: str
) -> None:
    response = client.get(f"/raise/{name}")

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert ("retry-after" in response.headers) == (status == 503)
    if status == 503:
        assert response.headers["retry-after"] == "5"


def test_client_errors_carry_their_message(client: TestClient) -> None:
    assert client.get("/raise/not-found").json()["error"]["message"] == "no such thing"
    assert "tags.category" in client.get("/raise/invalid").json()["error"]["message"]


def test_outages_and_bugs_do_not_reveal_internals(client: TestClient) -> None:
    assert "db.internal" not in client.get("/raise/unavailable").text
    assert "jobs" not in client.get("/raise/query").text


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/nowhere")
    wrong_method = client.delete("/echo")

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (
        405,
        "method_not_allowed",
    )


def test_validation_error_names_the_field_and_keeps_detail(client: TestClient) -> None:
    response = client.post("/echo", json={"count": "many"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert "body.count" in response.json()["error"]["message"]
    assert response.json()["detail"][0]["loc"] == ["body", "count"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/echo", content=b'{"count": ', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("body: invalid JSON")


@pytest.fixture
def limited() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=10)

    @app.post("/size")
    def size(body: dict[str, int]) -> int:
        return len(body)

    with TestClient(app) as client:
        yield client


def test_limit_refuses_declared_and_streamed_bodies(limited: TestClient) -> None:
    def stream() -> Iterator[bytes]:
        yield b'{"a": 1,'
        yield b' "b": 2}'

    declared = limited.post("/size", content=b'{"a": 1, "b": 2}')
    streamed = limited.post("/size", content=stream())

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


def test_limit_passes_small_bodies_through_whole(limited: TestClient) -> None:
    def stream() -> Iterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    response = limited.post("/size", content=stream(), headers={"Content-Type": "application/json"})

    assert response.json() == 1
    assert limited.post("/size", json={"a": 1}).json() == 1
