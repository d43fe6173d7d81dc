"""LLM providers behind one small interface, chosen per evaluation by name.

- ``openai``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
  LM Studio, ...) at ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``, or Azure OpenAI
  (``OPENAI_API_TYPE=azure``), through the official ``openai`` SDK
  (:mod:`providers.openai_api`).
- ``echo``: deterministic and offline, for demos and tests only; enabled by
  ``Settings.echo_provider_enabled`` (on in local, off elsewhere unless asked for).

Failures are classified once, in :mod:`providers.openai_api`: timeouts, connection errors,
408, 429 and 5xx are :class:`ProviderTransientError` (worth retrying, honouring
``Retry-After``: :func:`with_retries`); other 4xx are :class:`ProviderRejected` and
unusable answers :class:`ProviderMalformedResponse` (both permanent). The API key never
appears in a log line, a ``repr`` or an exception message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from pydantic import SecretStr

from core.settings import Settings
from providers.errors import (
    ProviderMalformedResponse,
    ProviderRejected,
    ProviderTransientError,
    UnknownProvider,
)
from providers.openai_api import OpenAIEndpoint, call, openai_client, parse_retry_after
from providers.retries import with_retries

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


# --- openai -------------------------------------------------------------------------------


class OpenAIProvider:
    """Chat completions from an OpenAI-compatible endpoint, over one SDK client.

    ``POST {base_url}/chat/completions`` (Azure: the deployment named by the model). The
    client pools connections and may be shared by the run's threads. ``timeout_s`` bounds
    each phase of a request (connect, send, each read); the SDK does not retry: the
    caller does (:func:`with_retries`, behind the shared rate limit).
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout_s: float,
        azure_api_version: str | None = None,
    ) -> None:
        self._endpoint = OpenAIEndpoint(
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            azure_api_version=azure_api_version,
        )
        self._client = openai_client(self._endpoint)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        endpoint = OpenAIEndpoint.from_settings(settings)
        return cls(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            timeout_s=endpoint.timeout_s,
            azure_api_version=endpoint.azure_api_version,
        )

    def __repr__(self) -> str:
        return f"OpenAIProvider({self._endpoint!r})"

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
        messages: list[Any] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["max_tokens"] = request.max_tokens
        answer = call(
            lambda: self._client.chat.completions.with_raw_response.create(
                model=request.model,
                messages=messages,
                extra_headers=self._endpoint.extra_headers,
                **options,
            ),
            self._endpoint,
        )
        data = answer.data
        text = _message_content(data)
        if text is None:
            raise ProviderMalformedResponse(
                "openai: the answer has no choices[0].message.content text: " + answer.excerpt
            )
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            usage = {}
        return Completion(
            text=text,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_ms=answer.latency_ms,
        )


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
