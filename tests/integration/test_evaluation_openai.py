"""The openai provider against a real local chat-completions server (tests/support).

Success, 429 with Retry-After then success, persistent 500 (recorded, or failing the run
by policy), a malformed body, timeouts and refused connections, the key kept out of every
message, log line and repr, and Azure OpenAI's routes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from jobs.retry import RetryPolicy
from providers.llm import (
    CompletionRequest,
    OpenAIProvider,
    ProviderMalformedResponse,
    ProviderRejected,
    ProviderTransientError,
    provider_for,
    with_retries,
)
from providers.rate_limit import Unlimited
from tasks.evaluation.run import EvaluationCaseFailed, RunOutcome, run_evaluation
from tasks.evaluation.scorers import score
from tasks.evaluation.spec import EvaluationSpec, JsonValidScorer
from tests.conftest import make_settings
from tests.support.fake_llm_server import FakeLLMServer, Reply

pytestmark = pytest.mark.integration

API_KEY = "sk-test-THIS-KEY-MUST-NOT-LEAK-0123456789"
FAST_RETRIES = RetryPolicy(base_s=0.01, max_s=5.0)
REQUEST = CompletionRequest(model="gpt-test", prompt="Capital of France?")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def provider(server: FakeLLMServer) -> Iterator[OpenAIProvider]:
    with OpenAIProvider(
        base_url=server.base_url, api_key=SecretStr(API_KEY), timeout_s=5.0
    ) as client:
        yield client


def make_spec(*names: str, **fields: Any) -> EvaluationSpec:
    return EvaluationSpec.model_validate(
        {
            "prompt_id": "p-1",
            "provider": "openai",
            "model": "gpt-test",
            "test_cases": [
                {"name": name, "variables": {"city": name}, "expected": name, "scorers": ["exact"]}
                for name in names
            ],
            **fields,
        }
    )


def run(spec: EvaluationSpec, provider: OpenAIProvider, **options: Any) -> RunOutcome:
    options.setdefault("max_concurrency", 1)
    options.setdefault("max_retries", 2)
    return run_evaluation(
        spec,
        "{{ city }}",
        "You repeat words.",
        provider,
        limiter=Unlimited(),
        retry_policy=FAST_RETRIES,
        **options,
    )


def test_a_completion_with_usage_latency_and_the_key(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.script(Reply.completion("Paris", prompt_tokens=12, completion_tokens=2))
    request = CompletionRequest(
        model="gpt-test",
        prompt="Capital of France?",
        system="Be brief.",
        temperature=0.2,
        max_tokens=20,
    )
    completion = provider.complete(request)
    assert completion.text == "Paris"
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 2)
    assert completion.latency_ms > 0
    [seen] = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.authorization == f"Bearer {API_KEY}"
    assert seen.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.2,
        "max_tokens": 20,
    }


def test_no_key_no_authorization_header(server: FakeLLMServer) -> None:
    with OpenAIProvider(base_url=server.base_url + "/", api_key=None, timeout_s=5) as keyless:
        assert keyless.complete(REQUEST).text == "Capital of France?"
    assert server.requests[0].authorization is None
    assert server.requests[0].path == "/v1/chat/completions"


def test_missing_usage_gives_unknown_tokens(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.script(Reply.json(200, {"choices": [{"message": {"content": "hi"}}]}))
    completion = provider.complete(REQUEST)
    assert (completion.text, completion.total_tokens) == ("hi", None)


def test_429_with_retry_after_then_success_waits_as_asked(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.script(Reply.rate_limited(retry_after="1"), Reply.completion("Paris"))
    completion = with_retries(lambda: provider.complete(REQUEST), FAST_RETRIES, 3)
    assert completion.text == "Paris"
    first, second = server.requests
    assert second.at - first.at >= 1.0  # Retry-After: 1, though the backoff alone is 10 ms


def test_429_then_success_inside_a_run(server: FakeLLMServer, provider: OpenAIProvider) -> None:
    server.script(Reply.rate_limited(retry_after="1"))
    outcome = run(make_spec("Paris"), provider)
    [result] = outcome.results
    assert (result.passed, result.errored, result.actual) == (True, False, "Paris")
    assert result.details["attempts"] == 2
    assert result.tokens_used == 10
    assert result.execution_time_ms >= 1000
    assert server.request_count == 2
    assert server.requests[1].at - server.requests[0].at >= 1.0


def test_persistent_500_is_recorded_for_the_case_under_policy_record(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.script(*[Reply.server_error()] * 3)  # case "Lyon": 1 try + 2 retries
    outcome = run(make_spec("Lyon", "Paris"), provider)
    failed, fine = outcome.results
    assert server.request_count == 4
    assert (failed.score, failed.passed, failed.errored, failed.actual) == (0.0, False, True, None)
    assert failed.details["attempts"] == 3
    assert failed.details["error"]["kind"] == "ProviderTransientError"
    assert failed.details["error"]["status"] == 500
    assert "HTTP 500" in failed.details["error"]["message"]
    assert fine.passed
    assert outcome.metrics.errored_cases == 1
    assert outcome.overall_score == 0.5
    assert outcome.passed  # 0.5 reaches the default threshold


def test_persistent_500_fails_the_run_under_policy_fail(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.default = lambda request: Reply.server_error()
    with pytest.raises(EvaluationCaseFailed) as caught:
        run(make_spec("Lyon", "Paris", error_policy="fail"), provider)
    assert caught.value.message.startswith(
        "case 'Lyon': the provider call failed after 3 attempt(s): openai: HTTP 500"
    )
    assert server.request_count == 3  # the pending case was never called


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (Reply(status=200, body=b"<html>gateway</html>"), "the answer is not JSON: <html>"),
        (Reply.json(200, {"choices": []}), "no choices[0].message.content"),
        (Reply.json(200, {"choices": [{"message": {"content": None}}]}), "no choices[0]"),
        (Reply.json(200, ["not", "an", "object"]), "no choices[0]"),
    ],
)
def test_a_malformed_body_is_a_permanent_error_for_that_case(
    server: FakeLLMServer, provider: OpenAIProvider, reply: Reply, fragment: str
) -> None:
    server.script(reply)
    outcome = run(make_spec("Lyon", "Paris"), provider)
    failed, fine = outcome.results
    assert failed.details["error"]["kind"] == "ProviderMalformedResponse"
    assert fragment in failed.details["error"]["message"]
    assert failed.details["attempts"] == 1  # never retried
    assert fine.passed
    assert server.request_count == 2
    server.script(reply)
    with pytest.raises(ProviderMalformedResponse):
        provider.complete(REQUEST)


def test_a_400_is_recorded_with_its_status_and_body(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    server.script(Reply.json(400, {"error": {"message": "maximum context length exceeded"}}))
    outcome = run(make_spec("Lyon", "Paris"), provider)
    error = outcome.results[0].details["error"]
    assert error["kind"] == "ProviderRejected"
    assert error["status"] == 400
    assert "maximum context length exceeded" in error["message"]
    assert server.request_count == 2


def test_a_bad_key_fails_the_run_and_never_shows_the_key(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    # Some servers echo what they were given; the excerpt must mask it.
    server.default = lambda request: Reply.json(
        401, {"error": {"message": f"Incorrect API key provided: {request.authorization}"}}
    )
    with pytest.raises(ProviderRejected) as caught:
        run(make_spec("Lyon", "Paris"), provider)
    assert caught.value.status == 401
    assert "Incorrect API key provided: Bearer ***" in caught.value.message
    assert API_KEY not in caught.value.message
    assert API_KEY not in repr(caught.value)
    assert server.request_count == 1


def test_the_key_is_in_no_error_of_any_kind(
    server: FakeLLMServer, provider: OpenAIProvider
) -> None:
    echo_key = json.dumps({"error": API_KEY}).encode()
    server.script(
        Reply(status=500, body=echo_key),
        Reply(status=429, body=echo_key, headers={"Retry-After": "0"}),
        Reply(status=422, body=echo_key),
        Reply(status=200, body=echo_key),
    )
    for expected in (
        ProviderTransientError,
        ProviderTransientError,
        ProviderRejected,
        ProviderMalformedResponse,
    ):
        with pytest.raises(expected) as caught:
            provider.complete(REQUEST)
        chain: BaseException | None = caught.value
        while chain is not None:
            assert API_KEY not in str(chain)
            assert API_KEY not in repr(chain)
            chain = chain.__cause__ or chain.__context__


def test_a_timeout_is_transient_and_names_the_limit(server: FakeLLMServer) -> None:
    server.script(Reply.completion("late", delay_s=1.0))
    with (
        OpenAIProvider(base_url=server.base_url, api_key=SecretStr(API_KEY), timeout_s=0.2) as slow,
        pytest.raises(ProviderTransientError) as caught,
    ):
        slow.complete(REQUEST)
    assert caught.value.message == "openai: no answer within 0.2 s"
    assert caught.value.__cause__ is None


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        OpenAIProvider(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=SecretStr(API_KEY), timeout_s=2
        ) as unreachable,
        pytest.raises(ProviderTransientError, match="connection failed"),
    ):
        unreachable.complete(REQUEST)


def test_concurrent_cases_share_one_client(server: FakeLLMServer, provider: OpenAIProvider) -> None:
    names = [f"city{i}" for i in range(12)]
    outcome = run(make_spec(*names), provider, max_concurrency=4)
    assert [r.name for r in outcome.results] == names
    assert outcome.metrics.passed_cases == 12
    assert outcome.metrics.total_tokens == 12 * 10
    assert outcome.metrics.mean_latency_ms is not None


def test_a_json_schema_ref_is_never_fetched(server: FakeLLMServer) -> None:
    scorer = JsonValidScorer.model_validate(
        {"type": "json_valid", "schema": {"$ref": f"http://127.0.0.1:{server.port}/schema.json"}}
    )
    verdict = score(scorer, "{}", None, case_name="c")
    assert not verdict.passed
    assert server.request_count == 0


def test_a_bad_key_is_in_no_log_line_nor_repr(
    server: FakeLLMServer, provider: OpenAIProvider, caplog: pytest.LogCaptureFixture
) -> None:
    server.default = lambda request: Reply.json(
        401, {"error": {"message": f"Incorrect API key provided: {request.authorization}"}}
    )
    caplog.set_level("DEBUG")
    with pytest.raises(ProviderRejected) as caught:
        run(make_spec("Lyon"), provider)
    assert caught.value.affects_every_case
    assert caught.value.__context__ is None  # the SDK's error (it quotes the server) is not kept
    assert caplog.records  # the SDK and its HTTP client did log the request
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(provider)


@pytest.mark.parametrize(("status", "run_level"), [(403, True), (404, True), (422, False)])
def test_rejections_that_affect_every_case(
    server: FakeLLMServer, provider: OpenAIProvider, status: int, run_level: bool
) -> None:
    server.script(Reply.json(status, {"error": {"message": "no"}}))
    with pytest.raises(ProviderRejected) as caught:
        provider.complete(REQUEST)
    assert caught.value.status == status
    assert caught.value.affects_every_case is run_level


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (Reply.json(408, {"error": {"message": "timeout"}}), None),
        (Reply.json(503, {}, headers={"Retry-After": "7"}), 7.0),
        (Reply.json(429, {}, headers={"retry-after-ms": "1500", "Retry-After": "2"}), 1.5),
    ],
)
def test_transient_statuses_carry_the_wait_asked_for(
    server: FakeLLMServer, provider: OpenAIProvider, reply: Reply, retry_after: float | None
) -> None:
    server.script(reply)
    with pytest.raises(ProviderTransientError) as caught:
        provider.complete(REQUEST)
    assert caught.value.status == reply.status
    assert caught.value.retry_after == retry_after
    assert server.request_count == 1  # the SDK does not retry: the caller does


def test_azure_openai_routes_to_the_deployment(server: FakeLLMServer, db_path: Path) -> None:
    settings = make_settings(
        db_path,
        openai_base_url=f"http://127.0.0.1:{server.port}",
        openai_api_key=SecretStr(API_KEY),
        openai_api_type="azure",
        openai_api_version="2024-10-21",
    )
    provider = provider_for("openai", settings)
    try:
        assert provider.complete(REQUEST).text == "Capital of France?"
    finally:
        provider.close()
    [seen] = server.requests
    assert seen.path == "/openai/deployments/gpt-test/chat/completions?api-version=2024-10-21"
    assert seen.headers["api-key"] == API_KEY
    assert seen.authorization is None
    assert API_KEY not in repr(provider)
