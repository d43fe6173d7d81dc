"""What a provider call can fail with: transient (worth retrying) or permanent.

The SDK's own exceptions never leave :mod:`providers.openai_api`: every failure is one of
these, with a message that never holds the API key.
"""

from __future__ import annotations

from core.errors import PermanentError, TransientError

#: Rejections that no request can escape (the key, the permissions, the model or URL): an
#: evaluation fails as a whole on them instead of recording the same error for every case.
RUN_LEVEL_STATUSES = frozenset({401, 403, 404})


class ProviderTransientError(TransientError):
    """The provider failed in a way that may pass: a timeout, a lost connection, 408, 429 or
    5xx. ``retry_after`` is the provider's ``Retry-After``, when it sent one."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class ProviderRejected(PermanentError):
    """The provider refused the request (a 4xx other than 408 and 429)."""

    def __init__(
        self, message: str | None = None, *, status: int | None = None, body_excerpt: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = body_excerpt

    @property
    def affects_every_case(self) -> bool:
        """Whether every request would be refused alike (bad key, no access, no such model)."""
        return self.status in RUN_LEVEL_STATUSES


class ProviderMalformedResponse(PermanentError):
    """The provider answered, but not with what was asked for."""


class EmbeddingDimensionMismatch(ProviderMalformedResponse):
    """The provider answered vectors of another dimension than the one asked for.

    Vectors of different dimensions never share an index: a new model or dimension means
    new vectors, so such an answer is refused rather than stored.
    """


class UnknownProvider(PermanentError):
    """No provider has that name here."""
