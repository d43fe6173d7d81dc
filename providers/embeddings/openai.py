"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint, through the official SDK.

``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as for chat (or Azure OpenAI, where the model is
the deployment's name). Texts go in batches (256 by default); each batch waits for the
shared rate limit of the ``openai`` provider and is retried on transient failures like a
chat call (:mod:`providers.retries`), so a long list does not start again from its first
batch on one 429.

Every answer is checked before anything is returned: one vector per text, of numbers, all
of the expected dimension. The dimension is the one asked for (``dim``, sent as the API's
``dimensions``), else the model's known one, else the one of the first answer; a vector of
another dimension is refused (:class:`EmbeddingDimensionMismatch`): vectors of different
dimensions never share an index. Vectors are returned L2-normalized.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import openai

from core.settings import Settings
from jobs.retry import PROVIDER_RETRY_POLICY, RetryPolicy
from providers.errors import EmbeddingDimensionMismatch, ProviderMalformedResponse
from providers.openai_api import Answer, OpenAIEndpoint, call, openai_client
from providers.rate_limit import Limiter, Unlimited
from providers.retries import with_retries

#: Texts per request (OpenAI accepts up to 2048; smaller batches retry cheaper).
DEFAULT_BATCH_SIZE = 256
#: How long one request may wait for a slot under the shared rate limit.
DEFAULT_RATE_LIMIT_WAIT_S = 300.0
#: Dimensions of OpenAI's models when no ``dimensions`` is asked for.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Embedded to learn the dimension of a model that is neither asked for nor known.
_PROBE_TEXT = "dimension"


class OpenAIEmbedder:
    """An :class:`~providers.embeddings.Embedder` over an OpenAI-compatible API.

    Args:
        settings: the endpoint, key, timeout and retry count (``PROVIDER_MAX_RETRIES``).
        model: the model (Azure: the deployment) whose name is stored with each vector.
        dim: the dimension to ask for (models that can shorten their vectors); ``None``:
            the model's own.
        client: an ``openai.OpenAI`` client to use (and not close), with its own URL, key
            and timeout; default: one built from the settings.
        limiter: the shared rate limit (``limiter_for(redis, "openai", settings)``);
            ``None``: none.

    May be called from several threads at once.
    """

    provider = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        model: str,
        dim: int | None = None,
        client: openai.OpenAI | None = None,
        limiter: Limiter | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_policy: RetryPolicy = PROVIDER_RETRY_POLICY,
        rate_limit_wait_s: float = DEFAULT_RATE_LIMIT_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model.strip():
            raise ValueError("the embedding model must be named")
        if dim is not None and dim < 1:
            raise ValueError(f"the embedding dimension must be at least 1; got {dim}")
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1; got {batch_size}")
        self._model = model
        self._requested_dim = dim
        self._dim = dim if dim is not None else KNOWN_DIMENSIONS.get(model)
        if client is None:
            self._endpoint = OpenAIEndpoint.from_settings(settings)
            self._client = openai_client(self._endpoint)
        else:
            self._endpoint = OpenAIEndpoint.of_client(client, settings.provider_timeout_s)
            self._client = client
        self._owns_client = client is None
        self._limiter: Limiter = limiter if limiter is not None else Unlimited()
        self._batch_size = batch_size
        self._retry_policy = retry_policy
        self._max_retries = settings.provider_max_retries
        self._rate_limit_wait_s = rate_limit_wait_s
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The model name stored with each vector."""
        return self._model

    @property
    def dim(self) -> int:
        """The vectors' dimension (for a model neither asked nor known: one probe request)."""
        if self._dim is None:
            self.embed([_PROBE_TEXT])  # sets it, or raises
        dim = self._dim
        if dim is None:
            raise ProviderMalformedResponse(f"openai: model {self._model!r}: no dimension")
        return dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector per text, in order.

        Raises :class:`~providers.errors.ProviderTransientError` when a batch outlasted its
        retries, :class:`~providers.errors.ProviderRejected` when the API refused it and
        :class:`~providers.errors.ProviderMalformedResponse` (or its
        :class:`EmbeddingDimensionMismatch`) for an answer that cannot be used.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one text")
        items = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(items), self._batch_size):
            batch = items[start : start + self._batch_size]
            vectors.extend(
                with_retries(
                    functools.partial(self._embed_batch, batch),
                    self._retry_policy,
                    self._max_retries,
                    sleep=self._sleep,
                )
            )
        return vectors

    def close(self) -> None:
        """Close the SDK client if this embedder made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self._model!r}, dim={self._dim}, {self._endpoint!r})"

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        """One request (one attempt): wait for the rate limit, send, check the answer."""
        self._limiter.acquire(self._rate_limit_wait_s)
        options: dict[str, Any] = {}
        if self._requested_dim is not None:
            options["dimensions"] = self._requested_dim
        answer = call(
            lambda: self._client.embeddings.with_raw_response.create(
                model=self._model,
                input=batch,
                encoding_format="float",
                extra_headers=self._endpoint.extra_headers,
                **options,
            ),
            self._endpoint,
        )
        raw = _raw_vectors(answer, len(batch))
        return [self._normalized(vector, answer) for vector in raw]

    def _normalized(self, vector: list[float], answer: Answer) -> list[float]:
        with self._lock:
            if self._dim is None:
                self._dim = len(vector)  # the first answer decides, for every later one
            expected = self._dim
        if len(vector) != expected:
            raise EmbeddingDimensionMismatch(
                f"openai: model {self._model!r} answered a {len(vector)}-dimensional vector "
                f"where {expected} dimensions were expected; vectors of different dimensions "
                "are never mixed (a new model or dimension needs new vectors)"
            )
        norm = math.sqrt(math.fsum(x * x for x in vector))
        if not norm > 0 or not math.isfinite(norm):
            raise ProviderMalformedResponse(
                f"openai: model {self._model!r} answered a vector that cannot be normalized "
                f"(norm {norm}): {answer.excerpt}"
            )
        return [x / norm for x in vector]


def _raw_vectors(answer: Answer, count: int) -> list[list[float]]:
    """``data[*].embedding`` of an embeddings answer, in the order of the inputs."""
    data = answer.data
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProviderMalformedResponse(
            f"openai: the answer has no data[] list of embeddings: {answer.excerpt}"
        )
    if len(items) != count:
        raise ProviderMalformedResponse(
            f"openai: {len(items)} embeddings answered for {count} texts: {answer.excerpt}"
        )
    indexes = [item.get("index") for item in items]
    if all(isinstance(i, int) for i in indexes):
        if sorted(indexes) != list(range(count)):
            raise ProviderMalformedResponse(
                f"openai: the embeddings' indexes are not 0..{count - 1}: {answer.excerpt}"
            )
        items = sorted(items, key=lambda item: item["index"])
    vectors: list[list[float]] = []
    for item in items:
        embedding = item.get("embedding")
        if (
            not isinstance(embedding, list)
            or not embedding
            or not all(_is_number(x) for x in embedding)
        ):
            raise ProviderMalformedResponse(
                "openai: an embedding is not a list of finite numbers (the API was asked for "
                f"floats): {answer.excerpt}"
            )
        vectors.append([float(x) for x in embedding])
    return vectors


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
