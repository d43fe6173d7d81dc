"""The openai embedder against a real local embeddings server (tests/support).

Vectors normalized and in order, batches, the dimension asked for, known or learned, a
wrong dimension refused, 429 with Retry-After, 500, 401 without the key, malformed
answers, Azure's routes, and the shared rate limit in front of every request.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from pydantic import SecretStr

from core.settings import Settings
from jobs.retry import RetryPolicy
from providers.embeddings import Embedder
from providers.embeddings.openai import OpenAIEmbedder
from providers.errors import (
    EmbeddingDimensionMismatch,
    ProviderMalformedResponse,
    ProviderRejected,
    ProviderTransientError,
)
from providers.rate_limit import RateLimiter
from tests.conftest import make_settings
from tests.support.fake_llm_server import FakeLLMServer, Reply, vector_for

pytestmark = pytest.mark.integration

API_KEY = "sk-test-EMBEDDING-KEY-MUST-NOT-LEAK-42"
FAST_RETRIES = RetryPolicy(base_s=0.001, max_s=5.0)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(embedding_dim=8) as running:
        yield running


def settings_for(server: FakeLLMServer, db_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_base_url": server.base_url,
        "openai_api_key": SecretStr(API_KEY),
        "provider_timeout_s": 5.0,
        "provider_max_retries": 2,
        **overrides,
    }
    return make_settings(db_path, **values)


def make_embedder(
    server: FakeLLMServer, db_path: Path, *, model: str = "embed-test", **options: Any
) -> OpenAIEmbedder:
    options.setdefault("retry_policy", FAST_RETRIES)
    return OpenAIEmbedder(settings_for(server, db_path), model=model, **options)


def normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def test_vectors_are_normalized_in_order_with_the_model_and_the_key(
    server: FakeLLMServer, db_path: Path
) -> None:
    texts = ["alpha", "beta", "gamma"]
    with make_embedder(server, db_path, dim=8) as embedder:
        typed: Embedder = embedder
        vectors = typed.embed(texts)
        assert (typed.model, typed.dim) == ("embed-test", 8)
    assert len(vectors) == 3
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(normalized(vector_for(text, 8)))
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0)
    [seen] = server.requests
    assert seen.path == "/v1/embeddings"
    assert seen.authorization == f"Bearer {API_KEY}"
    assert seen.body == {
        "model": "embed-test",
        "input": texts,
        "encoding_format": "float",
        "dimensions": 8,
    }


def test_answers_out_of_order_are_put_back_in_the_inputs_order(
    server: FakeLLMServer, db_path: Path
) -> None:
    first, second = vector_for("a", 8), vector_for("b", 8)
    server.script(
        Reply.json(
            200,
            {
                "data": [
                    {"index": 1, "embedding": second},
                    {"index": 0, "embedding": first},
                ]
            },
        )
    )
    with make_embedder(server, db_path) as embedder:
        vectors = embedder.embed(["a", "b"])
    assert vectors == [pytest.approx(normalized(first)), pytest.approx(normalized(second))]


def test_texts_go_in_batches(server: FakeLLMServer, db_path: Path) -> None:
    texts = [f"text {i}" for i in range(7)]
    with make_embedder(server, db_path, batch_size=3) as embedder:
        vectors = embedder.embed(texts)
    assert [request.inputs for request in server.requests] == [texts[:3], texts[3:6], texts[6:]]
    assert vectors == [pytest.approx(normalized(vector_for(t, 8))) for t in texts]


def test_the_default_batch_is_256_texts(server: FakeLLMServer, db_path: Path) -> None:
    with make_embedder(server, db_path) as embedder:
        vectors = embedder.embed([f"t{i}" for i in range(300)])
    assert [len(request.inputs) for request in server.requests] == [256, 44]
    assert len(vectors) == 300


def test_no_texts_no_request(server: FakeLLMServer, db_path: Path) -> None:
    with make_embedder(server, db_path, dim=8) as embedder:
        assert embedder.embed([]) == []
    assert server.request_count == 0


def test_one_string_is_refused_rather_than_embedded_letter_by_letter(
    server: FakeLLMServer, db_path: Path
) -> None:
    with (
        make_embedder(server, db_path, dim=8) as embedder,
        pytest.raises(TypeError, match="not one text"),
    ):
        embedder.embed("a text")  # a str is a Sequence[str]: easy to pass by mistake


def test_a_wrong_dimension_is_refused_at_once(server: FakeLLMServer, db_path: Path) -> None:
    server.script(Reply.embeddings([[0.1] * 4, [0.2] * 4]))
    with (
        make_embedder(server, db_path, dim=8) as embedder,
        pytest.raises(EmbeddingDimensionMismatch) as caught,
    ):
        embedder.embed(["a", "b"])
    assert caught.value.message.startswith(
        "openai: model 'embed-test' answered a 4-dimensional vector where 8 dimensions were "
        "expected"
    )
    assert "never mixed" in caught.value.message
    assert server.request_count == 1  # permanent: never retried


def test_a_known_model_has_its_dimension_without_asking(
    server: FakeLLMServer, db_path: Path
) -> None:
    with make_embedder(server, db_path, model="text-embedding-3-small") as embedder:
        assert embedder.dim == 1536
        assert server.request_count == 0
        # The server answers 8 dimensions: not what this model makes.
        with pytest.raises(EmbeddingDimensionMismatch, match="where 1536 dimensions"):
            embedder.embed(["a"])
    assert "dimensions" not in (server.requests[0].body or {})


def test_an_unknown_model_learns_its_dimension_from_one_probe(
    server: FakeLLMServer, db_path: Path
) -> None:
    with make_embedder(server, db_path, model="local-model") as embedder:
        assert embedder.dim == 8
        assert embedder.dim == 8
        assert server.request_count == 1
        assert len(embedder.embed(["x", "y"])[1]) == 8
        # Every later answer must keep it.
        server.script(Reply.embeddings([[1.0] * 16]))
        with pytest.raises(EmbeddingDimensionMismatch, match="16-dimensional"):
            embedder.embed(["z"])


def test_429_with_retry_after_then_success_waits_as_asked(
    server: FakeLLMServer, db_path: Path
) -> None:
    server.script(Reply.rate_limited(retry_after="2"))
    slept: list[float] = []
    with make_embedder(server, db_path, dim=8, sleep=slept.append) as embedder:
        vectors = embedder.embed(["a"])
    assert vectors == [pytest.approx(normalized(vector_for("a", 8)))]
    assert server.request_count == 2  # the SDK did not retry on its own
    assert len(slept) == 1
    assert slept[0] >= 2.0  # Retry-After: 2, though the backoff alone is 1 ms


def test_a_persistent_500_is_transient_after_the_retries(
    server: FakeLLMServer, db_path: Path
) -> None:
    server.embeddings_default = lambda request: Reply.server_error()
    with (
        make_embedder(server, db_path, dim=8, sleep=lambda _: None) as embedder,
        pytest.raises(ProviderTransientError) as caught,
    ):
        embedder.embed(["a"])
    assert caught.value.status == 500
    assert server.request_count == 3  # PROVIDER_MAX_RETRIES=2: one try and two retries


def test_a_bad_key_is_rejected_for_every_request_without_showing_the_key(
    server: FakeLLMServer, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.embeddings_default = lambda request: Reply.json(
        401, {"error": {"message": f"Incorrect API key provided: {request.authorization}"}}
    )
    caplog.set_level("DEBUG")
    with make_embedder(server, db_path, dim=8) as embedder:
        with pytest.raises(ProviderRejected) as caught:
            embedder.embed(["a"])
        assert API_KEY not in repr(embedder)
    assert caught.value.status == 401
    assert caught.value.affects_every_case
    assert "Incorrect API key provided: Bearer ***" in caught.value.message
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert API_KEY not in repr(caught.value)
    assert server.request_count == 1
    assert caplog.records  # the SDK and its HTTP client did log the request
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (Reply(status=200, body=b"<html>gateway</html>"), "the answer is not JSON"),
        (Reply.json(200, {"object": "list"}), "no data[] list"),
        (Reply.embeddings([[1.0] * 8]), "1 embeddings answered for 2 texts"),
        (
            Reply.json(200, {"data": [{"index": 0, "embedding": [1.0] * 8}] * 2}),
            "indexes are not 0..1",
        ),
        (
            Reply.json(200, {"data": [{"embedding": [1.0] * 8}, {"embedding": ["x"] * 8}]}),
            "not a list of finite numbers",
        ),
        (Reply.embeddings([[1.0] * 8, [0.0] * 8]), "cannot be normalized"),
    ],
)
def test_a_malformed_answer_is_permanent(
    server: FakeLLMServer, db_path: Path, reply: Reply, fragment: str
) -> None:
    server.script(reply)
    with (
        make_embedder(server, db_path, dim=8) as embedder,
        pytest.raises(ProviderMalformedResponse, match=fragment.replace("[", r"\[")),
    ):
        embedder.embed(["a", "b"])
    assert server.request_count == 1


def test_azure_routes_to_the_deployment_with_its_api_key_header(
    server: FakeLLMServer, db_path: Path
) -> None:
    settings = settings_for(
        server,
        db_path,
        openai_base_url=f"http://127.0.0.1:{server.port}",
        openai_api_type="azure",
        openai_api_version="2024-10-21",
    )
    with OpenAIEmbedder(settings, model="my-embeddings", dim=8) as embedder:
        assert len(embedder.embed(["a"])) == 1
    [seen] = server.requests
    assert seen.path == "/openai/deployments/my-embeddings/embeddings?api-version=2024-10-21"
    assert seen.headers["api-key"] == API_KEY
    assert seen.authorization is None


def test_every_request_waits_for_the_shared_rate_limit(
    server: FakeLLMServer, db_path: Path, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, "openai", 2, window_s=1.0)
    server.script(Reply.rate_limited(retry_after="0"))  # the first batch is tried twice
    try:
        with make_embedder(server, db_path, dim=8, batch_size=1, limiter=limiter) as embedder:
            embedder.embed(["a", "b"])
    finally:
        client.close()
    arrivals = [request.at for request in server.requests]
    assert len(arrivals) == 3
    # Three requests at two per second: the third waited for the first to leave the window.
    assert arrivals[2] - arrivals[0] >= 0.9


def test_a_client_of_its_own_keeps_its_key_and_stays_open(
    server: FakeLLMServer, db_path: Path
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY + "-own", max_retries=0)
    settings = make_settings(db_path, openai_base_url="http://127.0.0.1:9/v1")  # unused
    server.script(
        Reply.json(400, {"error": {"message": f"no: {API_KEY}-own"}}),
    )
    try:
        with OpenAIEmbedder(settings, model="embed-test", dim=8, client=client) as embedder:
            with pytest.raises(ProviderRejected) as caught:
                embedder.embed(["a"])
            assert "no: ***" in caught.value.message
            assert len(embedder.embed(["a"])[0]) == 8
            assert API_KEY not in repr(embedder)
        assert [r.authorization for r in server.requests] == [f"Bearer {API_KEY}-own"] * 2
        assert not client.is_closed()
    finally:
        client.close()


def test_a_timeout_is_transient_and_names_the_limit(server: FakeLLMServer, db_path: Path) -> None:
    late = Reply.embeddings([vector_for("a", 8)])
    server.script(Reply(status=200, body=late.body, headers=late.headers, delay_s=1.0))
    settings = settings_for(server, db_path, provider_timeout_s=0.2, provider_max_retries=0)
    with (
        OpenAIEmbedder(settings, model="embed-test", dim=8) as embedder,
        pytest.raises(ProviderTransientError) as caught,
    ):
        embedder.embed(["a"])
    assert caught.value.message == "openai: no answer within 0.2 s"
    assert caught.value.__context__ is None
