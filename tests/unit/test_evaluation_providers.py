"""Providers without a network: echo, choosing by name, Retry-After, the retry loop."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.retry import RetryPolicy
from providers.llm import (
    Completion,
    CompletionRequest,
    EchoProvider,
    OpenAIProvider,
    ProviderRejected,
    ProviderTransientError,
    UnknownProvider,
    parse_retry_after,
    provider_for,
    with_retries,
)
from providers.openai_api import OpenAIEndpoint, retry_after_from
from tests.conftest import make_settings


def test_echo_returns_the_prompt_deterministically() -> None:
    provider = EchoProvider()
    request = CompletionRequest(model="any", prompt="Say hello to Ada", system="Be brief.")
    first, second = provider.complete(request), provider.complete(request)
    assert first.text == second.text == "Say hello to Ada"
    assert (first.prompt_tokens, first.completion_tokens) == (6, 4)
    assert first.total_tokens == 10
    assert first.latency_ms >= 0


def test_echo_answers_from_its_canned_mapping() -> None:
    provider = EchoProvider(responses={"What is 2+2?": "4"})
    assert provider.complete(CompletionRequest(model="m", prompt="What is 2+2?")).text == "4"
    assert provider.complete(CompletionRequest(model="m", prompt="other")).text == "other"


def test_provider_for_openai_and_echo(db_path: Path) -> None:
    settings = make_settings(db_path, allow_echo_provider=True)
    assert isinstance(provider_for("echo", settings), EchoProvider)
    openai = provider_for("openai", settings)
    try:
        assert isinstance(openai, OpenAIProvider)
    finally:
        openai.close()


def test_an_unknown_provider_lists_the_known_names(db_path: Path) -> None:
    settings = make_settings(db_path, allow_echo_provider=True)
    with pytest.raises(UnknownProvider) as caught:
        provider_for("anthropic", settings)
    assert caught.value.message == "unknown provider 'anthropic'; known providers: 'openai', 'echo'"


def test_echo_is_refused_where_it_is_not_enabled(db_path: Path) -> None:
    settings = make_settings(db_path, allow_echo_provider=False)
    with pytest.raises(UnknownProvider) as caught:
        provider_for("echo", settings)
    assert "'echo' is disabled here" in caught.value.message
    assert caught.value.message.endswith("known providers: 'openai'")


def test_echo_is_on_by_default_only_in_local(db_path: Path) -> None:
    assert make_settings(db_path).echo_provider_enabled


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("1", 1.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


class Flaky:
    """Fails transiently ``failures`` times (with ``retry_after``), then answers."""

    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures, self.retry_after, self.calls = failures, retry_after, 0

    def __call__(self) -> Completion:
        self.calls += 1
        if self.calls <= self.failures:
            raise ProviderTransientError("busy", retry_after=self.retry_after, status=429)
        return Completion(text="ok", prompt_tokens=1, completion_tokens=1, latency_ms=1.0)


def test_with_retries_retries_transient_errors_honouring_retry_after() -> None:
    slept: list[float] = []
    call = Flaky(failures=2, retry_after=3.0)
    result = with_retries(call, RetryPolicy(base_s=0.01, max_s=10), 3, sleep=slept.append)
    assert result.text == "ok"
    assert call.calls == 3
    assert len(slept) == 2
    assert all(delay >= 3.0 for delay in slept)


def test_with_retries_gives_up_after_max_retries_with_the_last_error() -> None:
    slept: list[float] = []
    call = Flaky(failures=10)
    with pytest.raises(ProviderTransientError, match="busy"):
        with_retries(call, RetryPolicy(base_s=0.01, max_s=0.02), 2, sleep=slept.append)
    assert call.calls == 3
    assert len(slept) == 2


def test_with_retries_does_not_retry_permanent_errors() -> None:
    calls = 0

    def rejected() -> Completion:
        nonlocal calls
        calls += 1
        raise ProviderRejected("HTTP 400", status=400, body_excerpt="bad")

    with pytest.raises(ProviderRejected):
        with_retries(rejected, RetryPolicy(base_s=0.01, max_s=0.02), 5, sleep=lambda _: None)
    assert calls == 1


def test_zero_retries_means_one_attempt() -> None:
    call = Flaky(failures=1)
    with pytest.raises(ProviderTransientError):
        with_retries(call, RetryPolicy(base_s=0.01, max_s=0.02), 0, sleep=lambda _: None)
    assert call.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        ProviderTransientError("openai: HTTP 503: busy", retry_after=2.0, status=503),
        ProviderRejected("openai: HTTP 400: too long", status=400, body_excerpt="too long"),
        UnknownProvider("unknown provider 'x'; known providers: 'openai'"),
    ],
)
def test_errors_rebuild_from_their_message_as_celery_and_copy_do(error: Exception) -> None:
    rebuilt = type(error)(*error.args)
    assert str(rebuilt) == str(error)
    copied = copy.deepcopy(error)
    assert vars(copied) == vars(error)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "3"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "-5"}, 0.0),
    ],
)
def test_retry_after_prefers_openais_milliseconds(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_from(headers) == seconds


def test_azure_needs_its_api_version(db_path: Path) -> None:
    azure = "https://example.openai.azure.com"
    with pytest.raises(ValidationError, match="OPENAI_API_TYPE=azure requires OPENAI_API_VERSION"):
        make_settings(db_path, openai_api_type="azure", openai_base_url=azure)
    with pytest.raises(ValidationError, match="OPENAI_BASE_URL to be the Azure OpenAI endpoint"):
        make_settings(db_path, openai_api_type="azure", openai_api_version="2024-10-21")
    settings = make_settings(
        db_path, openai_api_type="azure", openai_api_version="2024-10-21", openai_base_url=azure
    )
    assert OpenAIEndpoint.from_settings(settings).azure_api_version == "2024-10-21"
    assert OpenAIEndpoint.from_settings(make_settings(db_path)).azure_api_version is None


def test_the_endpoint_keeps_its_key_out_of_repr(db_path: Path) -> None:
    settings = make_settings(db_path, openai_api_key="sk-unit-SECRET")
    endpoint = OpenAIEndpoint.from_settings(settings)
    assert endpoint.secret == "sk-unit-SECRET"
    assert "SECRET" not in repr(endpoint)
    provider = provider_for("openai", settings)
    try:
        assert "SECRET" not in repr(provider)
    finally:
        provider.close()
