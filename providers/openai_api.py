"""The official ``openai`` SDK, as every OpenAI-compatible provider here uses it.

:func:`openai_client` builds the SDK's client from the settings: ``openai.OpenAI`` for
any OpenAI-compatible API at ``OPENAI_BASE_URL`` (OpenAI, vLLM, Ollama, LM Studio, ...),
or ``openai.AzureOpenAI`` when ``OPENAI_API_TYPE=azure`` (then ``OPENAI_BASE_URL`` is the
Azure endpoint, ``OPENAI_API_VERSION`` its ``api-version``, and models are deployment
names). The SDK's timeout is ``PROVIDER_TIMEOUT_S``; its own retries are off, because
:mod:`providers.retries` owns retrying (every attempt passes the shared rate limit).

:func:`call` runs one SDK request and turns every failure into the error tree of
:mod:`providers.errors`: timeouts, lost connections, 408, 429 and 5xx are
:class:`ProviderTransientError` (with the ``Retry-After`` the server sent); other 4xx are
:class:`ProviderRejected` (401, 403 and 404 affect every request alike); a body that is not
JSON is :class:`ProviderMalformedResponse`. The SDK's exceptions are not chained to ours:
they hold the request, its headers and the server's words, any of which may carry the key.
The key never appears in an error message: an excerpt of the body has it masked.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from core.settings import Settings
from providers.errors import (
    ProviderMalformedResponse,
    ProviderRejected,
    ProviderTransientError,
)

if TYPE_CHECKING:
    # Imported where a client is made or used, not here: the API checks an evaluation's
    # provider through this module to accept a job, and must not load the SDK for that.
    import openai

BODY_EXCERPT_CHARS = 200
# Statuses that say "the same request may work later" (and every 5xx).
_TRANSIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class OpenAIEndpoint:
    """Where and how to reach an OpenAI-compatible API. The key stays out of ``repr``."""

    base_url: str
    api_key: SecretStr | None
    timeout_s: float
    #: Azure OpenAI's ``api-version``; ``None``: not Azure.
    azure_api_version: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEndpoint:
        return cls(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout_s=settings.provider_timeout_s,
            azure_api_version=(
                settings.openai_api_version if settings.openai_api_type == "azure" else None
            ),
        )

    @classmethod
    def of_client(cls, client: openai.OpenAI, default_timeout_s: float) -> OpenAIEndpoint:
        """The endpoint a ready-made client talks to (its timeout, if it has one)."""
        import openai

        timeout = client.timeout
        if isinstance(timeout, openai.Timeout):
            timeout = timeout.read
        return cls(
            base_url=str(client.base_url),
            api_key=SecretStr(client.api_key) if client.api_key else None,
            timeout_s=float(timeout) if isinstance(timeout, int | float) else default_timeout_s,
        )

    @property
    def secret(self) -> str:
        """The key (``""`` if none), for masking only."""
        return self.api_key.get_secret_value() if self.api_key is not None else ""

    @property
    def extra_headers(self) -> Mapping[str, Any] | None:
        """Per-request headers: without a key, no ``Authorization`` at all (the SDK
        refuses to send none unless told)."""
        if self.secret:
            return None
        import openai

        return {"Authorization": openai.omit}

    def __repr__(self) -> str:
        kind = f"azure {self.azure_api_version}" if self.azure_api_version else "openai"
        return f"OpenAIEndpoint({self.base_url!r}, {kind}, timeout {self.timeout_s:g} s)"


def openai_client(endpoint: OpenAIEndpoint) -> openai.OpenAI:
    """The SDK's client for ``endpoint``: retries off, the timeout on every request phase.

    Everything the SDK would otherwise take from the environment (key, base URL, Azure
    endpoint and version) is passed explicitly; the caller closes the client.
    """
    import openai

    if endpoint.azure_api_version is not None:
        return openai.AzureOpenAI(
            azure_endpoint=endpoint.base_url,
            api_version=endpoint.azure_api_version,
            api_key=endpoint.secret,
            timeout=endpoint.timeout_s,
            max_retries=0,
            _enforce_credentials=bool(endpoint.secret),
        )
    return openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.secret,
        timeout=endpoint.timeout_s,
        max_retries=0,
        # A local server (Ollama, vLLM) may need no key: then the request carries none.
        _enforce_credentials=bool(endpoint.secret),
    )


class RawResponse(Protocol):
    """What ``client.<resource>.with_raw_response.create(...)`` returns (the parts used)."""

    @property
    def http_response(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its JSON body and how long the request took."""

    data: object
    latency_ms: float
    excerpt: str


def call(send: Callable[[], RawResponse], endpoint: OpenAIEndpoint) -> Answer:
    """Run one SDK request (``send``) and return its JSON body, or raise a provider error.

    ``send`` calls a ``with_raw_response`` method, so that the body is read as sent: an
    OpenAI-compatible server may leave out fields that the SDK's models would require.
    """
    import openai

    started = time.perf_counter()
    failure: Exception
    try:
        raw = send()
    except openai.APIError as exc:
        # Raised outside this block, so that the SDK's exception is not its context.
        failure = _mapped(exc, endpoint)
    else:
        latency_ms = (time.perf_counter() - started) * 1000
        content: bytes = raw.http_response.content
        excerpt = body_excerpt(content, endpoint.secret)
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            failure = ProviderMalformedResponse(f"openai: the answer is not JSON: {excerpt}")
        else:
            return Answer(data=data, latency_ms=latency_ms, excerpt=excerpt)
    raise failure


def _mapped(exc: openai.APIError, endpoint: OpenAIEndpoint) -> Exception:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ProviderTransientError(f"openai: no answer within {endpoint.timeout_s:g} s")
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "no answer"
        return ProviderTransientError(f"openai: connection failed ({cause})")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        excerpt = body_excerpt(exc.response.content, endpoint.secret)
        if status in _TRANSIENT_STATUSES or status >= 500:
            return ProviderTransientError(
                f"openai: HTTP {status}: {excerpt}",
                retry_after=retry_after_from(exc.response.headers),
                status=status,
            )
        return ProviderRejected(
            f"openai: HTTP {status}: {excerpt}", status=status, body_excerpt=excerpt
        )
    # The answer did not fit the SDK's models (only with strict validation, which is off).
    return ProviderMalformedResponse(f"openai: {type(exc).__name__}")


def body_excerpt(content: bytes, secret: str) -> str:
    """The start of a body, on one line, with the key masked should the server echo it."""
    text = " ".join(content[: BODY_EXCERPT_CHARS * 4].decode("utf-8", "replace").split())
    if secret:
        text = text.replace(secret, "***")
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[:BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` (OpenAI's), else ``Retry-After``."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value / 1000)
    return parse_retry_after(headers.get("retry-after"))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
