"""A run without services: the echo provider and in-process providers written for the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from domain.schemas import EvaluationMetrics
from jobs.retry import RetryPolicy
from providers.llm import (
    Completion,
    CompletionRequest,
    EchoProvider,
    ProviderMalformedResponse,
    ProviderRejected,
    ProviderTransientError,
)
from providers.rate_limit import Unlimited
from tasks.evaluation.render import TemplateError
from tasks.evaluation.run import EvaluationCaseFailed, RunOutcome, run_evaluation
from tasks.evaluation.scorers import ScorerUnavailable
from tasks.evaluation.spec import EvaluationSpec

FAST_RETRIES = RetryPolicy(base_s=0.001, max_s=0.002)


def make_spec(*cases: dict[str, Any], **fields: Any) -> EvaluationSpec:
    return EvaluationSpec.model_validate(
        {"prompt_id": "p-1", "provider": "echo", "model": "echo-1", "test_cases": cases, **fields}
    )


def run(
    spec: EvaluationSpec, provider: Any, template: str = "{{ q }}", **options: Any
) -> RunOutcome:
    options.setdefault("max_concurrency", 2)
    options.setdefault("retry_policy", FAST_RETRIES)
    return run_evaluation(spec, template, None, provider, limiter=Unlimited(), **options)


class Scripted:
    """A provider answering from a function of the request, counting calls and overlap."""

    name = "scripted"

    def __init__(self, answer: Callable[[CompletionRequest], str], pause_s: float = 0) -> None:
        self.answer, self.pause_s = answer, pause_s
        self.calls: list[CompletionRequest] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def complete(self, request: CompletionRequest) -> Completion:
        with self._lock:
            self.calls.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.pause_s)
            return Completion(
                text=self.answer(request), prompt_tokens=2, completion_tokens=1, latency_ms=10.0
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        return None


def test_an_echo_run_scores_every_case_and_aggregates() -> None:
    spec = make_spec(
        {"name": "same", "variables": {"q": "Paris"}, "expected": "Paris", "scorers": ["exact"]},
        {
            "name": "inside",
            "variables": {"q": "in Paris now"},
            "expected": "Paris",
            "scorers": ["contains"],
        },
        {"name": "json", "variables": {"q": '{"a": 1}'}, "scorers": ["json_valid"]},
        {
            "name": "wrong",
            "variables": {"q": "Lyon"},
            "expected": "Paris",
            "scorers": ["exact", "contains"],
        },
        threshold=0.75,
    )
    progress: list[tuple[int, int]] = []
    outcome = run(
        spec, EchoProvider(), on_progress=lambda done, total: progress.append((done, total))
    )

    assert [r.name for r in outcome.results] == ["same", "inside", "json", "wrong"]
    assert [r.passed for r in outcome.results] == [True, True, True, False]
    assert [r.actual for r in outcome.results] == ["Paris", "in Paris now", '{"a": 1}', "Lyon"]
    assert outcome.overall_score == pytest.approx(0.75)
    assert outcome.passed  # 0.75 reaches the threshold
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert outcome.metrics == EvaluationMetrics(
        total_cases=4,
        passed_cases=3,
        failed_cases=1,
        errored_cases=0,
        total_tokens=sum(r.tokens_used or 0 for r in outcome.results),
        mean_latency_ms=outcome.metrics.mean_latency_ms,
        threshold=0.75,
        passed=True,
    )
    assert outcome.metrics.total_tokens == 2 + 6 + 4 + 2  # words in and out

    wrong = outcome.results[3]
    assert wrong.details["scorers"] == [
        {"type": "exact", "score": 0.0, "passed": False},
        {"type": "contains", "score": 0.0, "passed": False},
    ]
    assert wrong.details["attempts"] == 1
    stored = wrong.to_test_result("eval-1")
    assert (stored.evaluation_id, stored.test_case_name, stored.score) == ("eval-1", "wrong", 0.0)
    assert stored.input_data == {"q": "Lyon"}
    assert stored.expected_output == "Paris"
    assert stored.actual_output == "Lyon"
    assert outcome.summary()["metrics"]["total_cases"] == 4


def test_the_request_carries_the_rendered_prompts_and_model_parameters() -> None:
    provider = Scripted(lambda request: "ok")
    spec = make_spec(
        {
            "name": "c",
            "variables": {"q": "2+2", "lang": "ja"},
            "expected": "ok",
            "scorers": ["exact"],
        },
        temperature=0.3,
        max_tokens=50,
    )
    run_evaluation(
        spec,
        "What is {{ q }}?",
        "Answer in {{ lang }}.",
        provider,
        limiter=Unlimited(),
        max_concurrency=1,
    )
    assert provider.calls == [
        CompletionRequest(
            model="echo-1",
            prompt="What is 2+2?",
            system="Answer in ja.",
            temperature=0.3,
            max_tokens=50,
        )
    ]


def test_a_template_misfit_fails_before_any_call() -> None:
    provider = Scripted(lambda request: "x")
    spec = make_spec(
        {"name": "fits", "variables": {"q": "a"}, "expected": "x", "scorers": ["exact"]},
        {"name": "typo", "variables": {"qq": "a"}, "expected": "x", "scorers": ["exact"]},
    )
    with pytest.raises(TemplateError, match="case 'typo'"):
        run(spec, provider)
    assert provider.calls == []


def test_similarity_without_embeddings_fails_before_any_call() -> None:
    provider = Scripted(lambda request: "x")
    spec = make_spec(
        {"name": "c", "variables": {"q": "a"}, "expected": "x", "scorers": ["similarity"]}
    )
    with pytest.raises(ScorerUnavailable, match="not available yet"):
        run(spec, provider)
    assert provider.calls == []


def test_similarity_with_an_embedding_function() -> None:
    spec = make_spec(
        {"name": "c", "variables": {"q": "a"}, "expected": "b", "scorers": ["similarity"]}
    )
    outcome = run(spec, EchoProvider(), embed=lambda texts: [[1.0, 0.0] for _ in texts])
    assert outcome.results[0].passed


def test_calls_at_once_never_exceed_max_concurrency() -> None:
    provider = Scripted(lambda request: "x", pause_s=0.05)
    spec = make_spec(
        *(
            {"name": f"c{i}", "variables": {"q": "a"}, "expected": "x", "scorers": ["exact"]}
            for i in range(12)
        )
    )
    outcome = run(spec, provider, max_concurrency=3)
    assert outcome.metrics.passed_cases == 12
    assert 2 <= provider.most_in_flight <= 3


class Refusing(Scripted):
    """Refuses (permanently) the prompts in ``refuse`` with ``error``."""

    def __init__(self, refuse: set[str], error: Exception) -> None:
        super().__init__(lambda request: request.prompt)
        self.refuse, self.error = refuse, error

    def complete(self, request: CompletionRequest) -> Completion:
        if request.prompt in self.refuse:
            with self._lock:
                self.calls.append(request)
            raise self.error
        return super().complete(request)


def three_cases(**fields: Any) -> EvaluationSpec:
    return make_spec(
        *(
            {"name": name, "variables": {"q": name}, "expected": name, "scorers": ["exact"]}
            for name in ("a", "b", "c")
        ),
        **fields,
    )


def test_policy_record_scores_a_failed_call_0_with_the_error() -> None:
    error = ProviderRejected("openai: HTTP 400: too long", status=400, body_excerpt="too long")
    outcome = run(three_cases(), Refusing({"b"}, error))
    failed = outcome.results[1]
    assert (failed.score, failed.passed, failed.errored, failed.actual) == (0.0, False, True, None)
    assert failed.details == {
        "error": {
            "kind": "ProviderRejected",
            "message": "openai: HTTP 400: too long",
            "status": 400,
        },
        "attempts": 1,
    }
    assert failed.tokens_used is None
    assert outcome.metrics.errored_cases == 1
    assert outcome.metrics.failed_cases == 0
    assert outcome.metrics.passed_cases == 2
    assert outcome.overall_score == pytest.approx(2 / 3)


def test_policy_fail_ends_the_run_naming_the_case_and_drops_pending_cases() -> None:
    provider = Refusing({"a"}, ProviderMalformedResponse("openai: the answer is not JSON"))
    with pytest.raises(EvaluationCaseFailed) as caught:
        run(three_cases(error_policy="fail"), provider, max_concurrency=1)
    assert caught.value.message == (
        "case 'a': the provider call failed after 1 attempt(s): openai: the answer is not JSON"
    )
    assert isinstance(caught.value.__cause__, ProviderMalformedResponse)
    assert [c.prompt for c in provider.calls] == ["a"]


def test_a_rejection_of_every_case_ends_the_run_whatever_the_policy() -> None:
    error = ProviderRejected("openai: HTTP 401: invalid key", status=401, body_excerpt="")
    with pytest.raises(ProviderRejected, match="401"):
        run(three_cases(error_policy="record"), Refusing({"a", "b", "c"}, error), max_concurrency=1)


def test_an_error_in_the_callers_thread_drops_the_pending_cases() -> None:
    # As a time limit or a failed progress write would: the run stops, nothing more is called.
    raised = threading.Event()

    def answer(request: CompletionRequest) -> str:
        # Every case after the first waits for the caller's error, so that a busy machine
        # cannot let the provider's thread run ahead of the caller and prove nothing.
        if request.prompt != "c0":
            raised.wait(timeout=10)
        return request.prompt

    provider = Scripted(answer)
    spec = make_spec(
        *(
            {"name": f"c{i}", "variables": {"q": f"c{i}"}, "expected": "x", "scorers": ["exact"]}
            for i in range(20)
        )
    )

    def interrupted(done: int, total: int) -> None:
        raised.set()
        raise TimeoutError("time is up")

    with pytest.raises(TimeoutError):
        run(spec, provider, max_concurrency=1, on_progress=interrupted)
    time.sleep(0.05)  # let the worker thread finish the case it may have started
    assert len(provider.calls) <= 2


class FailsOneThrottlesOthers(Scripted):
    """Case "a" fails for good after a moment; every other case is throttled for 30 s."""

    def __init__(self) -> None:
        super().__init__(lambda request: request.prompt)

    def complete(self, request: CompletionRequest) -> Completion:
        with self._lock:
            self.calls.append(request)
        if request.prompt == "a":
            time.sleep(0.05)  # the others are waiting to retry by now
            raise ProviderMalformedResponse("openai: the answer is not JSON")
        raise ProviderTransientError("openai: HTTP 429", retry_after=30.0, status=429)


def test_a_failing_case_wakes_the_cases_waiting_to_retry_and_its_error_wins() -> None:
    started = time.monotonic()
    with pytest.raises(EvaluationCaseFailed, match="case 'a'"):
        run(
            three_cases(error_policy="fail"),
            FailsOneThrottlesOthers(),
            max_concurrency=3,
            retry_policy=RetryPolicy(base_s=0.001, max_s=60.0),
        )
    assert time.monotonic() - started < 10  # not the 30 s the others were asked to wait
