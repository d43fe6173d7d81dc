"""LLM providers behind one small interface, chosen per evaluation by name.

- ``openai``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
  LM Studio, ...), at ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``.
- ``echo``: deterministic and offline, for demos and tests only; enabled by
  ``Settings.echo_provider_enabled`` (on in local, off elsewhere unless asked for).

Failures are classified once, here: timeouts, connection errors, 408, 429 and 5xx are
:class:`ProviderTransientError` (worth retrying, honouring ``Retry-After``); other 4xx are
:class:`ProviderRejected` and unusable answers :class:`ProviderMalformedResponse` (both
permanent). The API key never appears in a log line or an exception message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import SecretStr

from core.errors import PermanentError, TransientError
from core.settings import Settings
from jobs.retry import RetryPolicy

log = logging.getLogger("autoforge.evaluation")

T = TypeVar("T")


_BODY_EXCERPT_CHARS = 200
# Statuses that say "the same request may work later".
_TRANSIENT_STATUSES = frozenset({408, 429})
# Rejections that no case can escape (the key, the permissions, the model or URL): the
# whole run fails with them instead of recording the same error for every case.
_RUN_LEVEL_STATUSES = frozenset({401, 403, 404})


# --- the interface ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One chat completion: a user message, an optional system message, model parameters."""

    model: str
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A provider's answer. Token counts are ``None`` when the provider does not report them."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class Provider(Protocol):
    """An LLM provider. ``complete`` may be called from several threads at once."""

    @property
    def name(self) -> str: ...

    def complete(self, request: CompletionRequest) -> Completion: ...

    def close(self) -> None: ...


# --- errors -------------------------------------------------------------------------------


class ProviderTransientError(TransientError):
    """The provider failed in a way that may pass: a timeout, a lost connection, 429 or 5xx."""

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
        return self.status in _RUN_LEVEL_STATUSES


class ProviderMalformedResponse(PermanentError):
    """The provider answered, but not with a chat completion."""


class UnknownProvider(PermanentError):
    """No provider has that name here."""


# --- retries ------------------------------------------------------------------------------


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    max_retries: int,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried up to ``max_retries`` times on :class:`ProviderTransientError`.

    Waits ``policy.delay(attempt, retry_after=...)`` between attempts, so a ``Retry-After``
    is honoured (up to the policy's cap). The last error is re-raised; any other error
    propagates at once.
    """
    attempt = 1
    while True:
        try:
            return call()
        except ProviderTransientError as exc:
            if attempt > max_retries:
                raise
            delay = policy.delay(attempt, retry_after=exc.retry_after)
            log.info("provider call failed (%s); retry %d in %.2fs", exc, attempt, delay)
            sleep(delay)
            attempt += 1


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


# --- openai -------------------------------------------------------------------------------


class OpenAIProvider:
    """An OpenAI-compatible chat-completions endpoint, over one pooled ``httpx.Client``.

    ``POST {base_url}/chat/completions``; the key (if any) goes in ``Authorization: Bearer``.
    ``timeout_s`` bounds each phase of a request (connect, send, each read), as httpx does.
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout_s: float,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        return cls(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout_s=settings.provider_timeout_s,
        )

    def __enter__(self) -> OpenAIProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def complete(self, request: CompletionRequest) -> Completion:
        messages = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        headers = {"Accept": "application/json"}
        if self._api_key is not None and self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"

        started = time.perf_counter()
        try:
            response = self._client.post(self._url, json=body, headers=headers)
        except httpx.TimeoutException:
            # Raised without the httpx error attached: it carries the request and its headers.
            raise ProviderTransientError(
                f"openai: no answer within {self._timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise ProviderTransientError(
                f"openai: connection failed ({type(exc).__name__})"
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000
        return self._completion(response, latency_ms)

    def _completion(self, response: httpx.Response, latency_ms: float) -> Completion:
        status = response.status_code
        if status in _TRANSIENT_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise ProviderTransientError(
                f"openai: HTTP {status}: {self._excerpt(response)}",
                retry_after=retry_after,
                status=status,
            )
        if not 200 <= status < 300:
            excerpt = self._excerpt(response)
            raise ProviderRejected(
                f"openai: HTTP {status}: {excerpt}", status=status, body_excerpt=excerpt
            )
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderMalformedResponse(
                f"openai: the answer is not JSON: {self._excerpt(response)}"
            ) from None
        text = _message_content(data)
        if text is None:
            raise ProviderMalformedResponse(
                "openai: the answer has no choices[0].message.content text: "
                f"{self._excerpt(response)}"
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text=text,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_ms=latency_ms,
        )

    def _excerpt(self, response: httpx.Response) -> str:
        """The start of the body, on one line, with the key masked should the server echo it."""
        text = " ".join(
            response.content[: _BODY_EXCERPT_CHARS * 4].decode("utf-8", "replace").split()
        )
        if self._api_key is not None and self._api_key.get_secret_value():
            text = text.replace(self._api_key.get_secret_value(), "***")
        if len(text) > _BODY_EXCERPT_CHARS:
            text = text[:_BODY_EXCERPT_CHARS] + "..."
        return text or "(empty body)"


def _message_content(data: object) -> str | None:
    if not isinstance(data, dict):
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


# --- echo ---------------------------------------------------------------------------------


class EchoProvider:
    """A deterministic offline provider, for demos and tests only: never a production default.

    Answers with the rendered user prompt, or, if ``responses`` maps that prompt to an
    answer, with the answer. Token counts are the number of whitespace-separated words.
    """

    name = "echo"

    def __init__(self, responses: Mapping[str, str] | None = None) -> None:
        self._responses = dict(responses or {})

    def complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        text = self._responses.get(request.prompt, request.prompt)
        prompt_words = len(request.prompt.split()) + len((request.system or "").split())
        return Completion(
            text=text,
            prompt_tokens=prompt_words,
            completion_tokens=len(text.split()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def close(self) -> None:
        return None


# --- choosing one -------------------------------------------------------------------------


def known_providers(settings: Settings) -> list[str]:
    """The provider names this deployment accepts."""
    names = ["openai"]
    if settings.echo_provider_enabled:
        names.append("echo")
    return names


def provider_for(name: str, settings: Settings) -> Provider:
    """The provider called ``name``, or :class:`UnknownProvider` listing the known names.

    The caller closes it when the run ends.
    """
    if name == "openai":
        return OpenAIProvider.from_settings(settings)
    if name == "echo" and settings.echo_provider_enabled:
        return EchoProvider()
    known = ", ".join(repr(n) for n in known_providers(settings))
    if name == "echo":
        raise UnknownProvider(
            f"provider 'echo' is disabled here (ALLOW_ECHO_PROVIDER); known providers: {known}"
        )
    raise UnknownProvider(f"unknown provider {name!r}; known providers: {known}")


__all__ = [
    "Completion",
    "CompletionRequest",
    "EchoProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderMalformedResponse",
    "ProviderRejected",
    "ProviderTransientError",
    "UnknownProvider",
    "known_providers",
    "parse_retry_after",
    "provider_for",
    "with_retries",
]
