"""One evaluation run, without a database: render, call the provider, score, aggregate.

:func:`run_evaluation` checks every case against the template first (nothing is called if
one does not fit), then runs the cases on a pool of ``max_concurrency`` threads. Each call
waits for the shared rate limit, and transient failures are retried with backoff. The
caller (the Celery task) stores the :class:`RunOutcome` in one write transaction.

What happens when a case's provider call fails for good (a permanent error, or a
transient one that outlasted its retries) is the spec's ``error_policy``: ``record`` scores
the case 0 with the error in its details, ``fail`` ends the run with
:class:`EvaluationCaseFailed`. A rejection that every case would meet alike (a bad key, no
access, no such model: :attr:`ProviderRejected.affects_every_case`) ends the run in both.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from core.errors import PermanentError
from domain.evaluations import TestResult
from domain.schemas import EvaluationMetrics
from jobs.retry import PROVIDER_RETRY_POLICY, RetryPolicy
from providers.llm import (
    Completion,
    CompletionRequest,
    Provider,
    ProviderRejected,
    ProviderTransientError,
    with_retries,
)
from providers.rate_limit import Limiter
from tasks.evaluation.render import VariableValue, check_cases, render_prompt
from tasks.evaluation.scorers import SIMILARITY_UNAVAILABLE, Embed, ScorerUnavailable, score_case
from tasks.evaluation.spec import EvaluationSpec, TestCase

#: Called after each case with (cases done, cases in the run), in the caller's thread.
ProgressCallback = Callable[[int, int], None]

#: How long one call may wait for a slot under the shared rate limit before that attempt
#: fails transiently (and is retried like any other transient failure).
DEFAULT_RATE_LIMIT_WAIT_S = 300.0


class EvaluationCaseFailed(PermanentError):
    """A case's provider call failed, and the run's error policy is "fail"."""


class _RunAborted(Exception):
    """Another case ended the run: this one stops before its next call."""


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one test case. ``errored``: its provider call failed for good."""

    name: str
    input_variables: dict[str, VariableValue]
    expected: str | None
    actual: str | None
    score: float
    passed: bool
    errored: bool
    details: dict[str, Any]
    execution_time_ms: int
    tokens_used: int | None
    latency_ms: float | None

    def to_test_result(self, evaluation_id: str) -> TestResult:
        """The domain's :class:`TestResult` of this case, for ``EvaluationRepository``."""
        return TestResult(
            evaluation_id=evaluation_id,
            test_case_name=self.name,
            score=self.score,
            passed=self.passed,
            input_data=dict(self.input_variables),
            expected_output=self.expected,
            actual_output=self.actual,
            details=self.details,
            execution_time_ms=self.execution_time_ms,
            tokens_used=self.tokens_used,
        )


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished run: per-case results (in the spec's order) and the aggregates."""

    results: tuple[CaseResult, ...]
    overall_score: float
    passed: bool
    metrics: EvaluationMetrics

    def test_results(self, evaluation_id: str) -> list[TestResult]:
        return [result.to_test_result(evaluation_id) for result in self.results]

    def summary(self) -> dict[str, Any]:
        """The run in a few numbers (JSON), e.g. for the job's result."""
        return {
            "overall_score": self.overall_score,
            "passed": self.passed,
            "metrics": self.metrics.model_dump(mode="json"),
        }


def run_evaluation(
    spec: EvaluationSpec,
    prompt_content: str,
    system_message: str | None,
    provider: Provider,
    *,
    limiter: Limiter,
    max_concurrency: int,
    on_progress: ProgressCallback | None = None,
    retry_policy: RetryPolicy = PROVIDER_RETRY_POLICY,
    max_retries: int = 3,
    rate_limit_wait_s: float = DEFAULT_RATE_LIMIT_WAIT_S,
    embed: Embed | None = None,
) -> RunOutcome:
    """Run every case of ``spec`` against the prompt and score the outputs.

    Raises before any call: :class:`~tasks.evaluation.render.TemplateError` if a case does
    not fit the template, :class:`ScorerUnavailable` if a scorer cannot run here. During the
    run: :class:`EvaluationCaseFailed` (policy "fail"), :class:`ProviderRejected` for a
    rejection of every case, and transient errors of the run's own machinery (e.g. Redis);
    pending cases are then dropped and calls in flight finish unobserved.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1; got {max_concurrency}")
    check_cases(prompt_content, spec.test_cases, system_message=system_message)
    if embed is None and "similarity" in spec.scorer_types():
        raise ScorerUnavailable(SIMILARITY_UNAVAILABLE)

    stop = threading.Event()

    def wait_to_retry(seconds: float) -> None:
        if stop.wait(seconds):
            raise _RunAborted()

    def run_case(case: TestCase) -> CaseResult:
        rendered = render_prompt(
            prompt_content, system_message, case.variables, case_name=case.name
        )
        request = CompletionRequest(
            model=spec.model,
            prompt=rendered.user,
            system=rendered.system,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
        )
        attempts = 0

        def attempt() -> Completion:
            nonlocal attempts
            if stop.is_set():
                raise _RunAborted()
            limiter.acquire(rate_limit_wait_s)
            attempts += 1
            return provider.complete(request)

        started = time.perf_counter()
        try:
            completion = with_retries(attempt, retry_policy, max_retries, sleep=wait_to_retry)
        except ProviderRejected as exc:
            if exc.affects_every_case:
                raise
            return _failed_case(spec, case, exc, attempts, started)
        except (ProviderTransientError, PermanentError) as exc:
            return _failed_case(spec, case, exc, attempts, started)
        verdict = score_case(
            case.scorers, completion.text, case.expected, case_name=case.name, embed=embed
        )
        return CaseResult(
            name=case.name,
            input_variables=dict(case.variables),
            expected=case.expected,
            actual=completion.text,
            score=verdict.value,
            passed=verdict.passed,
            errored=False,
            details={
                "scorers": list(verdict.scorers),
                "attempts": attempts,
                "latency_ms": round(completion.latency_ms, 3),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
            execution_time_ms=_elapsed_ms(started),
            tokens_used=completion.total_tokens,
            latency_ms=completion.latency_ms,
        )

    def run_case_or_stop(case: TestCase) -> CaseResult:
        try:
            return run_case(case)
        except BaseException:
            # A case that raises ends the run: the other threads stop before their next call
            # now, not when this thread's result is looked at.
            stop.set()
            raise

    total = len(spec.test_cases)
    finished: dict[str, CaseResult] = {}
    executor = ThreadPoolExecutor(
        max_workers=min(max_concurrency, total), thread_name_prefix="evaluation"
    )
    completed = False
    try:
        # Each case in a copy of the job's context: its log lines carry the job's fields.
        futures = [
            executor.submit(contextvars.copy_context().run, run_case_or_stop, case)
            for case in spec.test_cases
        ]
        for future in as_completed(futures):
            try:
                result = future.result()
            except _RunAborted:
                continue  # stopped by the case that failed, whose own error follows
            finished[result.name] = result
            if on_progress is not None:
                on_progress(len(finished), total)
        completed = True
    finally:
        if not completed:
            stop.set()  # also on a time limit or a cancellation raised in this thread
        executor.shutdown(wait=completed, cancel_futures=not completed)

    return _outcome(spec, [finished[case.name] for case in spec.test_cases])


def _failed_case(
    spec: EvaluationSpec,
    case: TestCase,
    exc: ProviderTransientError | PermanentError,
    attempts: int,
    started: float,
) -> CaseResult:
    if spec.error_policy == "fail":
        raise EvaluationCaseFailed(
            f"case {case.name!r}: the provider call failed after {attempts} attempt(s): {exc}"
        ) from exc
    error: dict[str, Any] = {"kind": type(exc).__name__, "message": str(exc)}
    status = getattr(exc, "status", None)
    if status is not None:
        error["status"] = status
    return CaseResult(
        name=case.name,
        input_variables=dict(case.variables),
        expected=case.expected,
        actual=None,
        score=0.0,
        passed=False,
        errored=True,
        details={"error": error, "attempts": attempts},
        execution_time_ms=_elapsed_ms(started),
        tokens_used=None,
        latency_ms=None,
    )


def _outcome(spec: EvaluationSpec, results: list[CaseResult]) -> RunOutcome:
    overall = math.fsum(r.score for r in results) / len(results)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    passed_cases = sum(r.passed for r in results)
    errored_cases = sum(r.errored for r in results)
    metrics = EvaluationMetrics(
        total_cases=len(results),
        passed_cases=passed_cases,
        failed_cases=len(results) - passed_cases - errored_cases,
        errored_cases=errored_cases,
        total_tokens=sum(r.tokens_used or 0 for r in results),
        mean_latency_ms=math.fsum(latencies) / len(latencies) if latencies else None,
        threshold=spec.threshold,
        passed=overall >= spec.threshold,
    )
    return RunOutcome(
        results=tuple(results),
        overall_score=overall,
        passed=overall >= spec.threshold,
        metrics=metrics,
    )


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
