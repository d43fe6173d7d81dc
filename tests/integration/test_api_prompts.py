"""``/v1/prompts`` on a real libSQL file: create, read, list, versions; soft-deleted hidden."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from tests.support.api import TestClient, ledger

pytestmark = pytest.mark.integration


def _create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Greeting", "content": "Say hello.", "user_id": "u1"}
    body.update(overrides)
    response = client.post("/v1/prompts", json=body)
    assert response.status_code == 201, response.text
    prompt: dict[str, Any] = response.json()
    return prompt


def _soft_delete(settings: Settings, prompt_id: str) -> None:
    with ledger(settings) as db:
        assert write_transaction(db, lambda s: PromptRepository(s).soft_delete(prompt_id))


def _listed(client: TestClient, **params: str) -> list[str]:
    response = client.get("/v1/prompts", params=params)
    assert response.status_code == 200, response.text
    return [prompt["id"] for prompt in response.json()["items"]]


def test_create_and_get(client: TestClient) -> None:
    response = client.post(
        "/v1/prompts",
        json={
            "title": "Summarize",
            "content": "Summarize: {text}",
            "user_id": "u1",
            "system_message": "Be brief.",
            "status": "active",
            "tags": {"category": "writing", "language": "en", "custom_tags": ["short"]},
            "meta_data": {"temperature": 0.2, "owner": "team-a", "reviewed": True},
        },
    )

    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/v1/prompts/{created['id']}"
    assert created["version"] == 1
    assert created["parent_id"] is None
    assert created["status"] == "active"
    assert created["tags"] == {"category": "writing", "language": "en", "custom_tags": ["short"]}
    assert created["meta_data"] == {"temperature": 0.2, "owner": "team-a", "reviewed": True}
    assert created["created_at"].endswith("Z")

    fetched = client.get(f"/v1/prompts/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_defaults(client: TestClient) -> None:
    created = _create(client)

    assert created["status"] == "draft"
    assert created["tags"] is None
    assert created["meta_data"] == {}
    assert created["system_message"] is None


def test_get_missing_prompt_is_404(client: TestClient) -> None:
    response = client.get("/v1/prompts/no-such-prompt")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_is_a_users_live_prompts_newest_first(
    client: TestClient, app_settings: Settings
) -> None:
    first = _create(client, title="one")
    second = _create(client, title="two", status="active")
    third = _create(client, title="three")
    _create(client, user_id="someone-else")
    _soft_delete(app_settings, third["id"])

    assert _listed(client, user_id="u1") == [second["id"], first["id"]]
    assert _listed(client, user_id="u1", status="active") == [second["id"]]
    assert _listed(client, user_id="u1", status="archived") == []
    assert _listed(client, user_id="nobody") == []
    assert len(_listed(client, user_id="u1", limit="1")) == 1


def test_soft_deleted_prompt_is_not_found(client: TestClient, app_settings: Settings) -> None:
    created = _create(client)
    _soft_delete(app_settings, created["id"])

    assert client.get(f"/v1/prompts/{created['id']}").status_code == 404
    response = client.post(f"/v1/prompts/{created['id']}/versions", json={"content": "v2"})
    assert response.status_code == 404


def test_new_version_points_at_its_parent(client: TestClient) -> None:
    parent = _create(client, tags={"category": "writing"}, meta_data={"k": 1}, status="active")

    response = client.post(f"/v1/prompts/{parent['id']}/versions", json={"content": "Say hi."})

    assert response.status_code == 201
    version = response.json()
    assert response.headers["location"] == f"/v1/prompts/{version['id']}"
    assert version["id"] != parent["id"]
    assert version["parent_id"] == parent["id"]
    assert version["version"] == 2
    assert version["content"] == "Say hi."
    assert version["title"] == parent["title"]
    assert version["status"] == "draft"
    assert version["tags"] == parent["tags"]
    assert version["meta_data"] == {"k": 1}

    retitled = client.post(
        f"/v1/prompts/{version['id']}/versions", json={"content": "Hi!", "title": "Hi"}
    ).json()
    assert (retitled["version"], retitled["title"], retitled["parent_id"]) == (
        3,
        "Hi",
        version["id"],
    )
    assert client.get(f"/v1/prompts/{parent['id']}").json()["content"] == "Say hello."


def test_version_of_missing_prompt_is_404(client: TestClient) -> None:
    response = client.post("/v1/prompts/no-such-prompt/versions", json={"content": "x"})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"tags": {"language": "en"}}, ["body", "tags", "category"]),
        ({"tags": {"category": "w", "colour": "red"}}, ["body", "tags", "colour"]),
        ({"tags": {"category": "w", "language": "English"}}, ["body", "tags", "language"]),
        ({"tags": {"category": "w", "custom_tags": [""]}}, ["body", "tags", "custom_tags", 0]),
        ({"tags": {"category": ""}}, ["body", "tags", "category"]),
        ({"tags": "writing"}, ["body", "tags"]),
        ({"meta_data": {"nested": {"a": 1}}}, ["body", "meta_data", "nested"]),
        ({"status": "deleted"}, ["body", "status"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "t" * 256}, ["body", "title"]),
        ({"user_id": None}, ["body", "user_id"]),
        ({"version": 7}, ["body", "version"]),
    ],
)
def test_invalid_prompt_is_422_naming_the_field(
    client: TestClient, overrides: dict[str, Any], loc: list[Any]
) -> None:
    body: dict[str, Any] = {"title": "t", "content": "c", "user_id": "u1", **overrides}

    response = client.post("/v1/prompts", json=body)

    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["detail"]]
    assert any(found[: len(loc)] == loc for found in locs), locs


def test_missing_fields_are_named(client: TestClient) -> None:
    response = client.post("/v1/prompts", json={})

    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["detail"]]
    for field in ("title", "content", "user_id"):
        assert ["body", field] in locs


@pytest.mark.parametrize(
    ("body", "loc"),
    [({}, ["body", "content"]), ({"content": "x", "parent_id": "p"}, ["body", "parent_id"])],
)
def test_invalid_version_is_422(client: TestClient, body: dict[str, Any], loc: list[str]) -> None:
    parent = _create(client)

    response = client.post(f"/v1/prompts/{parent['id']}/versions", json=body)

    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]


def test_list_needs_a_user(client: TestClient) -> None:
    response = client.get("/v1/prompts")

    assert response.status_code == 422
    assert ["query", "user_id"] in [error["loc"] for error in response.json()["detail"]]
