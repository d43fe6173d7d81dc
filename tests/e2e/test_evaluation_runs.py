"""Evaluation runs end to end: the API in this process, real Celery workers, a real LLM server.

Each test starts worker processes (``tests.support.processes``) on a migrated libSQL file
and the session's Redis, enqueues through the API (a ``TestClient`` in this process) and
reads the outcome back through the API and the database. The ``openai`` provider talks to
:class:`~tests.support.fake_llm_server.FakeLLMServer`, started here, which records every
request; the workers find it through ``OPENAI_BASE_URL`` and authenticate with a secret
``OPENAI_API_KEY`` that must never show up in a worker's log or in what is stored.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from sqlalchemy import update

from db.models import JobModel, PromptModel
from db.transaction import write_transaction
from domain.jobs import JobStatus
from providers.rate_limit import KEY_PREFIX
from tests.support.evaluation import (
    EVALUATION_TIMINGS,
    AdmissionRecorder,
    ByMessage,
    EvaluationApi,
    evaluation_body,
    gated,
    most_in_any_window,
    processes_connected_to,
    requests_for,
    result_rows,
    slow_echo,
)
from tests.support.fake_llm_server import FakeLLMServer, RecordedRequest, Reply
from tests.support.processes import Pipeline, open_pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPENAI_KEY = "sk-e2e-NEVER-LOG-THIS-7c41d0e9b2"
QUEUES = ("evaluations",)
DEMO_TEMPLATE = "Say hello to {{ name }} in {{ lang }}."


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@contextmanager
def evaluation_system(
    workdir: Path, redis_url: str, server: FakeLLMServer | None = None, **overrides: Any
) -> Iterator[tuple[Pipeline, EvaluationApi]]:
    """A pipeline (no worker yet) whose openai provider is ``server``, and the API over it."""
    settings: dict[str, Any] = {**EVALUATION_TIMINGS, "openai_api_key": OPENAI_KEY}
    if server is not None:
        settings["openai_base_url"] = server.base_url
    settings.update(overrides)
    with open_pipeline(workdir, redis_url, **settings) as pipeline, EvaluationApi(pipeline) as api:
        yield pipeline, api


def _word_cases(*words: str, **fields: Any) -> list[dict[str, Any]]:
    """Cases for the template ``{{ word }}``: an echo answers each with its word."""
    return [
        {
            "name": word,
            "variables": {"word": word},
            "expected": word,
            "scorers": ["exact"],
            **fields,
        }
        for word in words
    ]


def _results(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    results = evaluation["test_results"]
    assert isinstance(results, list)
    return {result["test_case_name"]: result for result in results}


def _assert_key_kept_secret(pipeline: Pipeline, api: EvaluationApi, *evaluation_ids: str) -> None:
    """The key is in no worker log, no API answer about the runs, no byte of the database."""
    for process in pipeline.processes:
        assert OPENAI_KEY not in process.log_text(), f"the key is in {process.log_path}"
    for evaluation_id in evaluation_ids:
        for path in (f"/v1/evaluations/{evaluation_id}", f"/v1/jobs/{evaluation_id}"):
            assert OPENAI_KEY not in api.client.get(path).text, path
    for stored in pipeline.db_path.parent.iterdir():
        if stored.is_file():
            assert OPENAI_KEY.encode() not in stored.read_bytes(), f"the key is in {stored}"


# --- a. the echo provider -------------------------------------------------------------------


def test_an_echo_run_end_to_end(tmp_path: Path, redis_url: str) -> None:
    with evaluation_system(tmp_path, redis_url) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt(DEMO_TEMPLATE)
        cases: list[dict[str, Any]] = [
            {
                "name": "ann",
                "variables": {"name": "Ann", "lang": "English"},
                "expected": "Say hello to Ann in English.",
                "scorers": ["exact"],
            },
            {
                "name": "bob",
                "variables": {"name": "Bob", "lang": "French"},
                "expected": "Bonjour",
                "scorers": ["contains", {"type": "regex", "pattern": "B[o]b"}],
            },
            {"name": "cy", "variables": {"name": "Cy", "lang": "Welsh"}, "scorers": ["json_valid"]},
        ]
        passing = api.enqueue(
            evaluation_body(prompt_id, cases, provider="echo", model="echo-1", threshold=0.5)
        )
        failing = api.enqueue(
            evaluation_body(prompt_id, cases, provider="echo", model="echo-1", threshold=0.6)
        )

        evaluation = api.wait_for_evaluation(passing, "completed")
        other = api.wait_for_evaluation(failing, "completed")
        job = api.job(passing)

        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0
        assert job["progress_detail"] == {"done": 3, "total": 3, "unit": "cases"}
        results = _results(evaluation)
        assert sorted(results) == ["ann", "bob", "cy"]
        ann, bob, cy = results["ann"], results["bob"], results["cy"]
        assert ann["actual_output"] == "Say hello to Ann in English."
        assert ann["input_data"] == {"name": "Ann", "lang": "English"}
        assert ann["expected_output"] == "Say hello to Ann in English."
        assert (ann["score"], ann["passed"]) == (1.0, True)
        assert ann["tokens_used"] == 12  # the echo counts words: 6 in, 6 out
        assert ann["execution_time_ms"] is not None
        assert bob["actual_output"] == "Say hello to Bob in French."
        assert (bob["score"], bob["passed"]) == (0.5, False)
        assert [(s["type"], s["passed"]) for s in bob["details"]["scorers"]] == [
            ("contains", False),
            ("regex", True),
        ]
        assert bob["details"]["scorers"][1]["match"] == "Bob"
        assert (cy["score"], cy["passed"]) == (0.0, False)
        assert cy["expected_output"] is None
        assert "not JSON" in cy["details"]["scorers"][0]["error"]

        # The overall score is the mean of the case scores; passed means >= threshold.
        assert evaluation["overall_score"] == pytest.approx(
            fmean(r["score"] for r in results.values())
        )
        assert evaluation["overall_score"] == pytest.approx(0.5)
        assert evaluation["passed"] is True
        assert other["overall_score"] == pytest.approx(0.5)
        assert other["passed"] is False
        assert evaluation["metrics"] == {
            "total_cases": 3,
            "passed_cases": 1,
            "failed_cases": 2,
            "errored_cases": 0,
            "total_tokens": 36,
            "mean_latency_ms": evaluation["metrics"]["mean_latency_ms"],
            "threshold": 0.5,
            "passed": True,
        }
        assert evaluation["started_at"] <= evaluation["completed_at"]
        assert job["result"] == {
            "overall_score": evaluation["overall_score"],
            "passed": True,
            "metrics": evaluation["metrics"],
        }
        assert result_rows(pipeline, passing) == 3

        runs = api.get(f"/v1/prompts/{prompt_id}/evaluations")["items"]
        assert [(r["id"], r["status"], r["passed"]) for r in runs] == [
            (failing, "completed", False),
            (passing, "completed", True),
        ]
        assert [r["overall_score"] for r in runs] == pytest.approx([0.5, 0.5])
        history = api.get(f"/v1/prompts/{prompt_id}/score-history", bucket="day")
        days = sorted({evaluation["completed_at"][:10], other["completed_at"][:10]})
        # Two runs finished on one UTC day (or, around midnight, on two days).
        expected = [(day, 0.5, 2 if len(days) == 1 else 1) for day in days]
        assert [(p["bucket"], p["mean_score"], p["runs"]) for p in history["points"]] == [
            (day, pytest.approx(score), runs) for day, score, runs in expected
        ]


# --- b. the openai provider against a real local server -------------------------------------


def test_openai_success_sends_the_request_and_keeps_the_key_secret(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    with evaluation_system(tmp_path, redis_url, server) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt("{{ word }}", system_message="Repeat the word.")
        run = api.enqueue(
            evaluation_body(prompt_id, _word_cases("Paris", "Rome"), temperature=0.3, max_tokens=16)
        )

        evaluation = api.wait_for_evaluation(run, "completed")

        results = _results(evaluation)
        for word in ("Paris", "Rome"):
            result = results[word]
            assert (result["actual_output"], result["score"], result["passed"]) == (
                word,
                1.0,
                True,
            )
            assert result["tokens_used"] == 10  # the server's usage: 7 prompt + 3 completion
            assert result["details"]["attempts"] == 1
            assert result["details"]["prompt_tokens"] == 7
            assert result["details"]["completion_tokens"] == 3
            assert result["details"]["latency_ms"] > 0
        assert evaluation["overall_score"] == 1.0
        assert evaluation["metrics"]["total_tokens"] == 20
        assert len(server.requests) == 2
        for request in server.requests:
            assert request.path == "/v1/chat/completions"
            assert request.authorization == f"Bearer {OPENAI_KEY}"  # it was used...
            assert request.body is not None
            assert request.body["model"] == "gpt-e2e"
            assert request.body["temperature"] == 0.3
            assert request.body["max_tokens"] == 16
            assert request.body["messages"][0] == {"role": "system", "content": "Repeat the word."}
        assert sorted(r.user_message or "" for r in server.requests) == ["Paris", "Rome"]
        _assert_key_kept_secret(pipeline, api, run)  # ...and kept


def test_openai_429_with_retry_after_is_retried_after_the_wait(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    responder = ByMessage()
    responder.script("busy", Reply.rate_limited(retry_after="1"))
    server.default = responder
    with evaluation_system(tmp_path, redis_url, server) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt("{{ word }}")
        run = api.enqueue(evaluation_body(prompt_id, _word_cases("busy", "calm")))

        evaluation = api.wait_for_evaluation(run, "completed")

        busy = _results(evaluation)["busy"]
        assert (busy["actual_output"], busy["score"], busy["passed"]) == ("busy", 1.0, True)
        assert busy["details"]["attempts"] == 2
        assert _results(evaluation)["calm"]["details"]["attempts"] == 1
        first, second = requests_for(server.requests, "busy")
        # The retry came no sooner than Retry-After asked (both times on the server's clock).
        assert second.at - first.at >= 1.0
        assert len(requests_for(server.requests, "calm")) == 1
        assert evaluation["metrics"]["errored_cases"] == 0
        _assert_key_kept_secret(pipeline, api, run)


def _always_500(request: RecordedRequest) -> Reply:
    # A server that echoes what it was sent, Authorization included, in its error body.
    return Reply.json(
        500, {"error": {"message": f"internal error serving {request.authorization}"}}
    )


def test_openai_persistent_500_is_recorded_for_its_case(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    responder = ByMessage()
    responder.script("down", *[_always_500] * 10)
    server.default = responder
    with evaluation_system(tmp_path, redis_url, server, provider_max_retries=1) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt("{{ word }}")
        run = api.enqueue(
            evaluation_body(prompt_id, _word_cases("down", "fine"), error_policy="record")
        )

        evaluation = api.wait_for_evaluation(run, "completed")

        down = _results(evaluation)["down"]
        assert (down["score"], down["passed"], down["actual_output"]) == (0.0, False, None)
        error = down["details"]["error"]
        assert error["kind"] == "ProviderTransientError"
        assert error["status"] == 500
        assert "HTTP 500" in error["message"]
        assert "internal error serving Bearer ***" in error["message"]  # the echo, masked
        assert down["details"]["attempts"] == 2  # the first call and PROVIDER_MAX_RETRIES=1
        assert len(requests_for(server.requests, "down")) == 2
        assert _results(evaluation)["fine"]["passed"] is True
        assert evaluation["overall_score"] == pytest.approx(0.5)
        assert evaluation["metrics"]["errored_cases"] == 1
        assert evaluation["metrics"]["failed_cases"] == 0
        assert api.job(run)["status"] == "succeeded"
        # The retry was logged with the server's answer: masked there too.
        [worker] = pipeline.processes
        assert "internal error serving Bearer ***" in worker.log_text()
        _assert_key_kept_secret(pipeline, api, run)


def test_openai_persistent_500_fails_the_run_when_the_policy_says_so(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    responder = ByMessage()
    responder.script("down", *[_always_500] * 10)
    server.default = responder
    with evaluation_system(tmp_path, redis_url, server, provider_max_retries=1) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt("{{ word }}")
        run = api.enqueue(evaluation_body(prompt_id, _word_cases("down"), error_policy="fail"))

        evaluation = api.wait_for_evaluation(run, "failed")
        job = pipeline.wait_for_job(run, JobStatus.FAILED)

        assert job.error is not None
        assert job.error.kind == "EvaluationCaseFailed"
        assert "case 'down'" in job.error.message
        assert "HTTP 500" in job.error.message
        assert job.attempts == 1  # a permanent failure: the job is not retried
        assert evaluation["error_message"] == f"EvaluationCaseFailed: {job.error.message}"
        assert evaluation["overall_score"] is None
        assert evaluation["completed_at"] is not None
        assert evaluation["test_results"] == []
        assert result_rows(pipeline, run) == 0
        assert len(requests_for(server.requests, "down")) == 2
        _assert_key_kept_secret(pipeline, api, run)


def test_openai_malformed_answers_are_permanent_errors_of_their_cases(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    responder = ByMessage()
    responder.script(
        "garbled",
        Reply(status=200, body=b"<html>gateway</html>", headers={"Content-Type": "text/html"}),
    )
    responder.script("hollow", Reply.json(200, {"id": "x", "choices": []}))
    server.default = responder
    # Retries are allowed (3): a malformed answer must not use them.
    with evaluation_system(tmp_path, redis_url, server, provider_max_retries=3) as (pipeline, api):
        pipeline.start_worker(QUEUES)
        prompt_id = api.create_prompt("{{ word }}")
        run = api.enqueue(evaluation_body(prompt_id, _word_cases("garbled", "hollow", "fine")))

        evaluation = api.wait_for_evaluation(run, "completed")

        results = _results(evaluation)
        for name, says in (("garbled", "not JSON"), ("hollow", "no choices[0].message.content")):
            result = results[name]
            assert (result["score"], result["passed"], result["actual_output"]) == (
                0.0,
                False,
                None,
            )
            assert result["details"]["error"]["kind"] == "ProviderMalformedResponse"
            assert says in result["details"]["error"]["message"]
            assert result["details"]["attempts"] == 1
            assert len(requests_for(server.requests, name)) == 1, "a permanent error is not retried"
        assert results["fine"]["passed"] is True
        assert evaluation["metrics"]["errored_cases"] == 2
        assert evaluation["overall_score"] == pytest.approx(1 / 3)
        assert api.job(run)["attempts"] == 1
        _assert_key_kept_secret(pipeline, api, run)


# --- c. one rate limit shared by every worker -----------------------------------------------

LIMIT = 3
WINDOW_S = 2.0
CASES_PER_RUN = 3
# The server stamps a request when it arrives, after the limiter admitted it in a worker:
# a request may spend a little longer in that trip than a later one (thread scheduling in
# a busy pool process). The Redis clock, which decides, is checked with no allowance.
ARRIVAL_ALLOWANCE_S = 0.25


def test_two_workers_share_one_rate_limit(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    gate = threading.Event()
    server.default = gated(gate)
    with (
        evaluation_system(
            tmp_path,
            redis_url,
            server,
            provider_rpm={"openai": LIMIT},
            provider_rate_window_s=WINDOW_S,
        ) as (pipeline, api),
        AdmissionRecorder(redis_url, KEY_PREFIX + "openai") as admissions,
    ):
        prompt_id = api.create_prompt("{{ word }}")

        def enqueue(run: str) -> str:
            words = [f"{run}-{i}" for i in range(CASES_PER_RUN)]
            return api.enqueue(evaluation_body(prompt_id, _word_cases(*words)))

        # Worker 1 takes two runs (one per pool process: prefetch 1, late acks), and the
        # gate holds every answer, so both are still running when worker 2 starts: the two
        # later runs can only go to worker 2.
        try:
            first = pipeline.start_worker(QUEUES, concurrency=2)
            first_runs = [enqueue("a1"), enqueue("a2")]
            for run in first_runs:
                pipeline.wait_for_job(run, JobStatus.RUNNING)
            second = pipeline.start_worker(QUEUES, concurrency=2)
            second_runs = [enqueue("b1"), enqueue("b2")]
            for run in second_runs:
                pipeline.wait_for_job(run, JobStatus.RUNNING)
        finally:
            gate.set()  # also on a failure: nothing may wait for it at the teardown

        evaluations = [api.wait_for_evaluation(run, "completed") for run in first_runs]
        evaluations += [api.wait_for_evaluation(run, "completed") for run in second_runs]
        for worker, runs in ((first, first_runs), (second, second_runs)):
            for run in runs:
                assert f"Task autoforge.evaluation[{run}] received" in worker.log_text(), (
                    f"{run} did not run in {worker.name}\n{api.describe(runs)}"
                )

    for evaluation in evaluations:
        assert evaluation["overall_score"] == 1.0, evaluation  # no call gave up waiting
        assert all(r["details"]["attempts"] == 1 for r in evaluation["test_results"])
    total = 4 * CASES_PER_RUN
    assert admissions.error is None
    admitted = admissions.admitted
    arrivals = [request.at for request in server.requests]
    assert len(arrivals) == len(admitted) == total
    # The guarantee, on the Redis clock that decides: never more than LIMIT per window...
    assert most_in_any_window(admitted, WINDOW_S) == LIMIT
    # ...which is what the server saw too, but for the trip from admission to arrival.
    assert most_in_any_window(arrivals, WINDOW_S - ARRIVAL_ALLOWANCE_S) <= LIMIT, sorted(
        round(t - min(arrivals), 3) for t in arrivals
    )
    # 12 calls at 3 per window: three full windows at least between the first and the last.
    assert max(admitted) - min(admitted) >= (total // LIMIT - 1) * WINDOW_S


# --- d. a worker killed mid-run -------------------------------------------------------------

SLOW_CASES = 6


@pytest.mark.chaos
def test_a_run_killed_mid_way_is_finished_by_redelivery_with_one_set_of_results(
    tmp_path: Path, redis_url: str, server: FakeLLMServer
) -> None:
    server.default = slow_echo(1.0)
    with evaluation_system(tmp_path, redis_url, server, evaluation_max_concurrency=2) as (
        pipeline,
        api,
    ):
        worker = pipeline.start_worker(QUEUES, concurrency=2)
        prompt_id = api.create_prompt("{{ word }}")
        words = [f"w{i}" for i in range(SLOW_CASES)]
        run = api.enqueue(evaluation_body(prompt_id, _word_cases(*words)))

        # Mid-run: some cases done (progress recorded), others still waiting for answers.
        wait_until(
            lambda: pipeline.job(run).progress > 0,
            timeout=20,
            what="the first cases done",
            describe=lambda: api.describe([run]),
        )
        running_in = processes_connected_to(server.port, worker.pool_processes())
        assert len(running_in) == 1, (running_in, worker.pool_processes())
        os.kill(running_in[0], signal.SIGKILL)
        first_attempt_requests = server.request_count

        # Killed mid-run: the job still runs, and nothing of that attempt is stored.
        assert pipeline.job(run).status is JobStatus.RUNNING
        assert result_rows(pipeline, run) == 0
        evaluation = api.wait_for_evaluation(run, "completed", timeout=40)

        job = pipeline.wait_for_job(run, JobStatus.SUCCEEDED)
        assert job.attempts == 2
        assert worker.alive
        assert "exited with 'signal 9 (SIGKILL)'" in worker.log_text()
        # Exactly one set of results, and exactly one delivery that completed the run.
        assert result_rows(pipeline, run) == SLOW_CASES
        assert sorted(_results(evaluation)) == sorted(words)
        assert evaluation["overall_score"] == 1.0
        assert evaluation["metrics"]["total_cases"] == SLOW_CASES
        assert pipeline.task_outcomes(run) == [{"succeeded": True, "attempt": 2}]
        # The second attempt called the provider for every case again.
        assert server.request_count >= first_attempt_requests + SLOW_CASES
        assert all(requests_for(server.requests, word) for word in words)


# --- e. a template error only the worker can see --------------------------------------------


def test_a_template_that_no_longer_fits_fails_the_job_naming_variable_and_case(
    tmp_path: Path, redis_url: str
) -> None:
    with evaluation_system(tmp_path, redis_url) as (pipeline, api):
        prompt_id = api.create_prompt("Hello {{ name }}.")
        cases = [
            {"name": "ann", "variables": {"name": "Ann"}, "expected": "x", "scorers": ["exact"]},
            {"name": "bob", "variables": {"name": "Bob"}, "expected": "x", "scorers": ["exact"]},
        ]
        run = api.enqueue(evaluation_body(prompt_id, cases, provider="echo"))
        # Accepted (the template fitted then); the prompt changes before a worker runs it.
        write_transaction(
            pipeline.runtime.db,
            lambda s: s.execute(
                update(PromptModel)
                .where(PromptModel.id == prompt_id)
                .values(content="Hello {{ place }}.")
            ),
        )
        pipeline.start_worker(QUEUES)

        evaluation = api.wait_for_evaluation(run, "failed")
        job = pipeline.wait_for_job(run, JobStatus.FAILED)

        assert job.error is not None
        assert job.error.kind == "TemplateError"
        for named in ("'place'", "'name'", "case 'ann'", "case 'bob'"):
            assert named in job.error.message, job.error.message
        assert job.attempts == 1  # permanent: not retried
        assert evaluation["error_message"] == f"TemplateError: {job.error.message}"
        assert evaluation["started_at"] is not None
        assert evaluation["test_results"] == []
        assert result_rows(pipeline, run) == 0
        shown = api.job(run)
        assert shown["status"] == "failed"
        assert shown["error"] == {"kind": "TemplateError", "message": job.error.message}


# --- f. patterns from users -----------------------------------------------------------------

_NESTED = {"type": "regex", "pattern": "(a+)+$"}
_NESTED_IN_A_SCHEMA = {"type": "string", "pattern": "(a+)+$"}


def test_a_pattern_that_backtracks_for_hours_in_python_scores_in_one_attempt(
    tmp_path: Path, redis_url: str
) -> None:
    hostile = "a" * 36 + "!"  # for Python's re, "(a+)+$" tries every split of the a's
    with evaluation_system(tmp_path, redis_url) as (pipeline, api):
        prompt_id = api.create_prompt("{{ word }}")
        cases = [
            {"name": "hostile", "variables": {"word": hostile}, "scorers": [_NESTED]},
            {"name": "matching", "variables": {"word": "a" * 36}, "scorers": [_NESTED]},
            {
                # jsonschema alone would run the schema's pattern with Python's re.
                "name": "hostile schema",
                "variables": {"word": json.dumps(hostile)},
                "scorers": [{"type": "json_valid", "schema": _NESTED_IN_A_SCHEMA}],
            },
            {
                "name": "stored",
                "variables": {"word": "Bob Smith"},
                "scorers": [{"type": "regex", "pattern": "Bob"}, "json_valid"],
            },
        ]
        run = api.enqueue(evaluation_body(prompt_id, cases, provider="echo", model="echo-1"))
        # A run stored before patterns were checked with RE2 may hold one it cannot run.
        arguments = pipeline.job(run).arguments
        arguments["test_cases"][3]["scorers"][0]["pattern"] = "Bob(?= )"
        write_transaction(
            pipeline.runtime.db,
            lambda s: s.execute(
                update(JobModel).where(JobModel.id == run).values(arguments=arguments)
            ),
        )
        pipeline.start_worker(QUEUES)

        evaluation = api.wait_for_evaluation(run, "completed", timeout=60)
        job = pipeline.wait_for_job(run, JobStatus.SUCCEEDED)

        assert job.attempts == 1
        assert pipeline.task_outcomes(run) == [{"succeeded": True, "attempt": 1}]
        results = _results(evaluation)
        assert results["hostile"]["actual_output"] == hostile
        assert (results["hostile"]["score"], results["hostile"]["passed"]) == (0.0, False)
        assert results["hostile"]["details"]["scorers"] == [
            {"type": "regex", "score": 0.0, "passed": False}
        ]
        assert (results["matching"]["score"], results["matching"]["passed"]) == (1.0, True)
        assert results["matching"]["details"]["scorers"][0]["match"] == "a" * 36
        in_schema = results["hostile schema"]
        assert (in_schema["score"], in_schema["passed"]) == (0.0, False)
        assert in_schema["details"]["scorers"][0]["schema_errors"] == [
            f"(root): {hostile!r} does not match '(a+)+$'"
        ]
        stored = results["stored"]
        assert (stored["score"], stored["passed"]) == (0.0, False)
        assert stored["details"]["scorers"][0] == {
            "type": "regex",
            "score": 0.0,
            "passed": False,
            "error": "RE2 cannot use this pattern: invalid perl operator: (?=",
        }
        assert evaluation["metrics"]["total_cases"] == 4
        assert evaluation["metrics"]["passed_cases"] == 1
        assert result_rows(pipeline, run) == 4
