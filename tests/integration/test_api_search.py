"""``GET /v1/prompts/search``, ``DELETE /v1/prompts/{id}`` and ``POST /v1/jobs/embedding``
through the API, with the real local model and a real libSQL file and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from providers.embeddings.local import LocalEmbedder
from tasks.embedding.job import embed_prompts
from tests.support.api import TestClient, ledger, llen
from tests.support.prompt_corpus import QUERIES, add_corpus

pytestmark = pytest.mark.integration


@pytest.fixture
def corpus(app_settings: Settings) -> dict[str, list[str]]:
    with ledger(app_settings) as db:
        ids = add_corpus(db)
        embed_prompts(db, LocalEmbedder(), all_stale=True)
    return ids


def _search(client: TestClient, q: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/prompts/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_search_ranks_the_topic_first(
    client: TestClient, corpus: dict[str, list[str]], mode: str
) -> None:
    items = _search(client, QUERIES["translation"], k=3, mode=mode)
    assert {item["prompt"]["id"] for item in items} == set(corpus["translation"])
    assert items[0]["score"] >= items[1]["score"] >= items[2]["score"]
    assert items[0]["prompt"]["title"]


def test_a_deleted_prompt_leaves_the_search(
    client: TestClient, corpus: dict[str, list[str]]
) -> None:
    first = _search(client, QUERIES["cooking"], k=1)[0]["prompt"]["id"]

    assert client.delete(f"/v1/prompts/{first}").status_code == 204
    assert client.get(f"/v1/prompts/{first}").status_code == 404
    again = client.delete(f"/v1/prompts/{first}")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "not_found"
    for mode in ("vector", "hybrid"):
        found = {i["prompt"]["id"] for i in _search(client, QUERIES["cooking"], k=50, mode=mode)}
        assert first not in found
        assert found, "the rest are still found"


@pytest.mark.parametrize(
    "params",
    [{"q": ""}, {"q": "x", "k": 0}, {"q": "x", "k": 101}, {"q": "x", "mode": "fuzzy"}, {}],
)
def test_bad_search_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/v1/prompts/search", params=params)
    assert response.status_code == 422, response.text


def test_nothing_embedded_finds_nothing(client: TestClient) -> None:
    assert _search(client, "anything") == []


def test_an_embedding_job_is_accepted(client: TestClient, app_settings: Settings) -> None:
    response = client.post("/v1/jobs/embedding", json={"all_stale": True})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "embedding"
    assert llen(str(app_settings.redis_url.get_secret_value()), "embeddings") == 1  # type: ignore[union-attr]

    by_id = client.post("/v1/jobs/embedding", json={"prompt_ids": ["a", "b", "a"]})
    assert by_id.status_code == 202
    assert by_id.json()["progress_detail"] == {"done": 0, "total": 2, "unit": "prompts"}


@pytest.mark.parametrize(
    "body",
    [{}, {"all_stale": True, "prompt_ids": ["a"]}, {"prompt_ids": []}, {"all_stale": "yes"}],
)
def test_an_embedding_job_needs_one_target(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/v1/jobs/embedding", json=body)
    assert response.status_code == 422, response.text
