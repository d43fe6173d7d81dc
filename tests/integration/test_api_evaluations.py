"""Evaluation runs through the API, with no worker: enqueue, 422s, cancel, retry, reads.

``POST /v1/jobs/evaluation`` against a real libSQL file and a real Redis: what the API
answers is checked against the ledger and the evaluation rows (read with a separate
database handle) and against the Redis list Celery delivers evaluations from. The reads
(``/v1/evaluations``, a prompt's runs, its score history) are checked on rows arranged
directly through :class:`EvaluationRepository`, with chosen completion times.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libsql
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from core.settings import Settings
from db.explain import explain, render_plan
from db.models import EvaluationModel, JobModel, TestResultModel
from db.repositories.evaluations import BUCKET_FORMATS, EvaluationRepository
from db.repositories.jobs import JobRepository
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.evaluations import Evaluation, EvaluationStatus
from domain.jobs import JobError, JobStatus
from domain.prompts import Prompt
from tasks.evaluation.lifecycle import fail_evaluation
from tasks.registry import kind_registry
from tests.support.api import (
    AUTH,
    TestClient,
    api_settings,
    client_for,
    ledger,
    llen,
)
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration

QUEUE = "evaluations"
TEMPLATE = "Say hello to {{ name }} in {{lang}}."
INDEX = "idx_evaluations_prompt_completed"


def _create_prompt(client: TestClient, content: str = TEMPLATE, **fields: Any) -> str:
    body = {"title": "greeting", "content": content, "user_id": "u1", **fields}
    response = client.post("/v1/prompts", json=body)
    assert response.status_code == 201, response.text
    prompt_id = response.json()["id"]
    assert isinstance(prompt_id, str)
    return prompt_id


@pytest.fixture
def prompt_id(client: TestClient) -> str:
    return _create_prompt(client)


def _case(name: str, **fields: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "variables": {"name": name.title(), "lang": "English"},
        "expected": f"Say hello to {name.title()} in English.",
        "scorers": ["exact"],
    }
    case.update(fields)
    return case


def _body(prompt_id: str, *cases: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_id": prompt_id,
        "provider": "echo",
        "model": "echo-1",
        "test_cases": list(cases) or [_case("ann")],
    }
    body.update(fields)
    return body


def _enqueue(client: TestClient, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs/evaluation", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert isinstance(job_id, str)
    return job_id


def _evaluation(settings: Settings, evaluation_id: str) -> Evaluation:
    with ledger(settings) as db, db.read_session() as session:
        evaluation = EvaluationRepository(session).get(evaluation_id)
    assert evaluation is not None, f"evaluation {evaluation_id} is not stored"
    return evaluation


def _row_counts(settings: Settings) -> dict[str, int]:
    with ledger(settings) as db, db.read_session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (JobModel, EvaluationModel, TestResultModel)
        }


def _errors(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "validation_error", body
    detail = body["detail"]
    assert isinstance(detail, list)
    assert detail, body
    return detail


def _the_error(response: Any) -> dict[str, Any]:
    [error] = _errors(response)
    return error


# --- enqueue ---------------------------------------------------------------------------


def test_enqueue_creates_a_pending_evaluation_with_the_jobs_id(
    client: TestClient, app_settings: Settings, prompt_id: str, redis_url: str
) -> None:
    body = _body(
        prompt_id,
        _case("ann"),
        _case(
            "bob",
            variables={"name": "Bob", "lang": "French"},
            expected="Bonjour",
            scorers=["contains", {"type": "regex", "pattern": "Bob"}],
        ),
        threshold=0.75,
        temperature=0.2,
        max_tokens=64,
    )

    response = client.post("/v1/jobs/evaluation", json=body)

    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "evaluation"
    assert job["status"] == "queued"
    assert job["max_attempts"] == kind_registry().max_attempts(app_settings, "evaluation")
    assert job["progress_detail"] == {"done": 0, "total": 2, "unit": "cases"}
    # The job's arguments are the whole request, defaults filled in and scorers spelled out.
    expected_arguments = {
        "prompt_id": prompt_id,
        "provider": "echo",
        "model": "echo-1",
        "temperature": 0.2,
        "max_tokens": 64,
        "threshold": 0.75,
        "error_policy": "record",
        "test_cases": [
            {
                "name": "ann",
                "variables": {"name": "Ann", "lang": "English"},
                "expected": "Say hello to Ann in English.",
                "scorers": [{"type": "exact"}],
            },
            {
                "name": "bob",
                "variables": {"name": "Bob", "lang": "French"},
                "expected": "Bonjour",
                "scorers": [{"type": "contains"}, {"type": "regex", "pattern": "Bob"}],
            },
        ],
    }
    assert job["arguments"] == expected_arguments
    with ledger(app_settings) as db, db.read_session() as session:
        stored_job = JobRepository(session).get(job["id"])
    assert stored_job is not None
    assert stored_job.status is JobStatus.QUEUED
    assert stored_job.arguments == expected_arguments
    assert stored_job.published_at is not None

    evaluation = _evaluation(app_settings, job["id"])
    assert evaluation.status is EvaluationStatus.PENDING
    assert (evaluation.prompt_id, evaluation.provider, evaluation.model) == (
        prompt_id,
        "echo",
        "echo-1",
    )
    assert evaluation.overall_score is None
    assert evaluation.started_at is None
    assert evaluation.completed_at is None
    assert evaluation.results == ()
    assert llen(redis_url, QUEUE) == 1
    assert _row_counts(app_settings) == {"jobs": 1, "evaluations": 1, "test_results": 0}

    read = client.get(f"/v1/evaluations/{job['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "pending"
    assert read.json()["test_results"] == []


def test_a_placeholder_without_a_value_is_422_naming_case_and_variable(
    client: TestClient, app_settings: Settings, prompt_id: str, redis_url: str
) -> None:
    body = _body(prompt_id, _case("ann"), _case("bob", variables={"name": "Bob"}))

    error = _the_error(client.post("/v1/jobs/evaluation", json=body))

    assert error["loc"] == ["body", "test_cases", 1, "variables"]
    assert "'bob'" in error["msg"]
    assert "'lang'" in error["msg"]
    assert "no value for placeholder" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}
    assert llen(redis_url, QUEUE) == 0


def test_a_variable_without_a_placeholder_is_422_naming_case_and_variable(
    client: TestClient, app_settings: Settings, prompt_id: str, redis_url: str
) -> None:
    body = _body(
        prompt_id,
        _case("ann", variables={"name": "Ann", "lang": "English", "mood": "cheerful"}),
        _case("bob"),
    )

    error = _the_error(client.post("/v1/jobs/evaluation", json=body))

    assert error["loc"] == ["body", "test_cases", 0, "variables"]
    assert "'ann'" in error["msg"]
    assert "'mood'" in error["msg"]
    assert "not used by the template" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}
    assert llen(redis_url, QUEUE) == 0


def test_every_case_that_does_not_fit_is_named(client: TestClient, prompt_id: str) -> None:
    body = _body(
        prompt_id,
        _case("ann", variables={"name": "Ann"}),
        _case("bob"),
        _case("cy", variables={"name": "Cy", "lang": "Welsh", "extra": 1}),
    )

    errors = _errors(client.post("/v1/jobs/evaluation", json=body))

    assert [error["loc"] for error in errors] == [
        ["body", "test_cases", 0, "variables"],
        ["body", "test_cases", 2, "variables"],
    ]
    assert "'ann'" in errors[0]["msg"]
    assert "'lang'" in errors[0]["msg"]
    assert "'cy'" in errors[1]["msg"]
    assert "'extra'" in errors[1]["msg"]


def test_the_system_message_is_part_of_the_template(client: TestClient) -> None:
    prompt_id = _create_prompt(
        client, content="Greet {{ name }}.", system_message="Answer in {{ lang }}."
    )

    # lang is used by the system message only: it fits.
    _enqueue(client, _body(prompt_id, _case("ann")))
    error = _the_error(
        client.post(
            "/v1/jobs/evaluation", json=_body(prompt_id, _case("bob", variables={"name": "Bob"}))
        )
    )
    assert error["loc"] == ["body", "test_cases", 0, "variables"]
    assert "'lang'" in error["msg"]


@pytest.mark.parametrize("provider", ["anthropic", "OpenAI", "echo "])
def test_an_unknown_provider_is_422_on_the_provider_field(
    client: TestClient, app_settings: Settings, prompt_id: str, provider: str, redis_url: str
) -> None:
    error = _the_error(client.post("/v1/jobs/evaluation", json=_body(prompt_id, provider=provider)))

    assert error["loc"][-1] == "provider"
    assert repr(provider) in error["msg"]
    assert "openai" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}
    assert llen(redis_url, QUEUE) == 0


def test_echo_is_refused_where_the_settings_disable_it(
    migrated: Settings, db_path: Path, redis_url: str
) -> None:
    settings = api_settings(db_path, redis_url, allow_echo_provider=False)
    with client_for(settings, headers=AUTH) as client:
        prompt_id = _create_prompt(client)
        error = _the_error(client.post("/v1/jobs/evaluation", json=_body(prompt_id)))
        # The same request with the real provider is accepted.
        _enqueue(client, _body(prompt_id, provider="openai", model="gpt-test"))

    assert error["loc"][-1] == "provider"
    assert "ALLOW_ECHO_PROVIDER" in error["msg"]
    assert "echo" not in error["msg"].split("known providers:")[1]
    counts = _row_counts(settings)
    assert (counts["jobs"], counts["evaluations"]) == (1, 1)
    assert llen(redis_url, QUEUE) == 1


def test_the_similarity_scorer_is_accepted(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    case = _case("ann", scorers=["exact", {"type": "similarity", "threshold": 0.9}])

    response = client.post("/v1/jobs/evaluation", json=_body(prompt_id, case))

    assert response.status_code == 202, response.text
    assert _row_counts(app_settings) == {"jobs": 1, "evaluations": 1, "test_results": 0}


def test_a_missing_prompt_id_is_422(client: TestClient, app_settings: Settings) -> None:
    body = _body("unused")
    del body["prompt_id"]

    error = _the_error(client.post("/v1/jobs/evaluation", json=body))

    assert error["loc"] == ["body", "prompt_id"]
    assert error["type"] == "missing"
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


def test_a_prompt_that_does_not_exist_is_422_on_prompt_id(
    client: TestClient, app_settings: Settings, redis_url: str
) -> None:
    error = _the_error(client.post("/v1/jobs/evaluation", json=_body("no-such-prompt")))

    assert error["loc"] == ["body", "prompt_id"]
    assert "no-such-prompt" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}
    assert llen(redis_url, QUEUE) == 0


def test_a_soft_deleted_prompt_cannot_be_evaluated(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    with ledger(app_settings) as db:
        assert write_transaction(db, lambda s: PromptRepository(s).soft_delete(prompt_id))

    error = _the_error(client.post("/v1/jobs/evaluation", json=_body(prompt_id)))

    assert error["loc"] == ["body", "prompt_id"]
    assert _row_counts(app_settings)["evaluations"] == 0


def test_a_prompt_deleted_while_the_enqueue_waits_is_422_and_nothing_is_queued(
    client: TestClient, app_settings: Settings, prompt_id: str, db_path: Path, redis_url: str
) -> None:
    """The prompt exists when the request is checked, and is deleted before the enqueue
    transaction gets the write lock: the check inside that transaction refuses it."""
    stats = client.app.state.resources.runtime.db.stats  # type: ignore[attr-defined]
    holder = libsql.connect(str(db_path), isolation_level=None, timeout=0)
    answers: list[Any] = []
    try:
        holder.execute("BEGIN IMMEDIATE")
        retries_before = stats.lock_retries
        request = threading.Thread(
            target=lambda: answers.append(client.post("/v1/jobs/evaluation", json=_body(prompt_id)))
        )
        request.start()

        def waiting_for_the_lock() -> bool:  # checked, and waiting for the lock
            assert request.is_alive(), answers
            return bool(stats.lock_retries != retries_before)

        wait_until(
            waiting_for_the_lock, timeout=60, what="the enqueue waiting for the lock", interval=0.01
        )
        holder.execute("UPDATE prompts SET deleted_at = updated_at WHERE id = ?", (prompt_id,))
        holder.execute("COMMIT")
        request.join(timeout=60)
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()

    [answer] = answers
    error = _the_error(answer)
    assert error["loc"] == ["body", "prompt_id"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}
    assert llen(redis_url, QUEUE) == 0


def test_duplicate_case_names_are_422_naming_them(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    body = _body(prompt_id, _case("ann"), _case("bob"), _case("ann"))

    error = _the_error(client.post("/v1/jobs/evaluation", json=body))

    assert error["loc"] == ["body", "test_cases"]
    assert "unique" in error["msg"]
    assert "'ann'" in error["msg"]
    assert "'bob'" not in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(unclosed", "missing ): (unclosed"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        ("Bob(?= in)", "invalid perl operator: (?="),
        ("(?<!x)Bob", "invalid perl operator: (?<!"),
        (r"\pL{1000}", "pattern too large - compile failed"),
    ],
)
def test_a_pattern_re2_cannot_run_is_422_naming_the_field_and_the_reason(
    client: TestClient, app_settings: Settings, prompt_id: str, pattern: str, reason: str
) -> None:
    case = _case("bob", scorers=["exact", {"type": "regex", "pattern": pattern}])

    response = client.post("/v1/jobs/evaluation", json=_body(prompt_id, _case("a"), case))
    error = _the_error(response)

    assert error["loc"] == ["body", "test_cases", 1, "scorers", 1, "regex", "pattern"]
    assert f"RE2 cannot use this pattern: {reason}" in error["msg"]
    assert response.json()["error"]["message"].startswith(
        "body.test_cases.1.scorers.1.regex.pattern: "
    )
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


def test_a_json_schema_with_a_pattern_re2_cannot_run_is_422_naming_the_case_and_where(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "(?<=#)x"}}}
    case = _case("bob", scorers=[{"type": "json_valid", "schema": schema}])

    response = client.post("/v1/jobs/evaluation", json=_body(prompt_id, _case("a"), case))
    error = _the_error(response)

    assert error["loc"][:4] == ["body", "test_cases", 1, "scorers"]
    assert (
        "case 'bob': scorers[0] (json_valid).schema has a pattern at properties/id/pattern "
        "that RE2 cannot use: invalid perl operator: (?<="
    ) in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


def test_a_pattern_that_would_backtrack_for_hours_is_accepted(
    client: TestClient, prompt_id: str
) -> None:
    # RE2 runs it in linear time; nothing to refuse.
    case = _case("ann", scorers=[{"type": "regex", "pattern": "(a+)+$"}])
    _enqueue(client, _body(prompt_id, case))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_variables_are_422_naming_the_variable(
    client: TestClient, app_settings: Settings, prompt_id: str, constant: str
) -> None:
    # Python's JSON reader accepts these non-JSON constants; they must not reach the ledger.
    body = json.dumps(_body(prompt_id)).replace('"English"', constant)

    error = _the_error(
        client.post(
            "/v1/jobs/evaluation", content=body, headers={"Content-Type": "application/json"}
        )
    )

    assert error["loc"] == ["body", "test_cases", 0, "variables", "lang"]
    assert "NaN and Infinity are not JSON numbers" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_json_schema_are_422_naming_where(
    client: TestClient, app_settings: Settings, prompt_id: str, constant: str
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "maximum": 1}}}
    case = _case("ann", scorers=[{"type": "json_valid", "schema": schema}])
    body = json.dumps(_body(prompt_id, case)).replace('"maximum": 1', f'"maximum": {constant}')

    error = _the_error(
        client.post(
            "/v1/jobs/evaluation", content=body, headers={"Content-Type": "application/json"}
        )
    )

    assert error["loc"] == ["body", "test_cases", 0, "scorers", 0, "json_valid", "schema"]
    assert "NaN and Infinity are not JSON numbers; found at properties/n/maximum" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_a_threshold_out_of_range_is_422(
    client: TestClient, app_settings: Settings, prompt_id: str, threshold: float
) -> None:
    error = _the_error(
        client.post("/v1/jobs/evaluation", json=_body(prompt_id, threshold=threshold))
    )

    assert error["loc"] == ["body", "threshold"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


def test_a_scorer_that_needs_expected_without_it_is_422(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    case = _case("ann", scorers=["contains"])
    del case["expected"]

    error = _the_error(client.post("/v1/jobs/evaluation", json=_body(prompt_id, case)))

    assert error["loc"] == ["body", "test_cases", 0, "scorers"]
    assert "case 'ann'" in error["msg"]
    assert "expected" in error["msg"]
    assert _row_counts(app_settings) == {"jobs": 0, "evaluations": 0, "test_results": 0}


# --- cancel and retry -------------------------------------------------------------------


def test_cancelling_a_queued_evaluation_job_cancels_the_evaluation(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    job_id = _enqueue(client, _body(prompt_id))

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    evaluation = _evaluation(app_settings, job_id)
    assert evaluation.status is EvaluationStatus.CANCELLED
    assert evaluation.completed_at is not None
    assert evaluation.results == ()
    assert client.get(f"/v1/evaluations/{job_id}").json()["status"] == "cancelled"
    # Cancelled twice: the job is final.
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409


def test_a_failed_evaluation_job_cannot_be_retried(
    client: TestClient, app_settings: Settings, prompt_id: str, redis_url: str
) -> None:
    job_id = _enqueue(client, _body(prompt_id))
    error = JobError("TemplateError", "case 'ann': no value for placeholder(s) 'lang'")

    def fail(session: Any) -> None:
        jobs = JobRepository(session)
        assert jobs.fail(job_id, error)
        job = jobs.get(job_id)
        assert job is not None
        fail_evaluation(session, job, error)  # what the worker does when a job ends failed

    with ledger(app_settings) as db:
        write_transaction(db, fail)

    response = client.post(f"/v1/jobs/{job_id}/retry")

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "job_state_conflict"
    assert "evaluation" in response.json()["error"]["message"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == {"kind": error.kind, "message": error.message}
    evaluation = _evaluation(app_settings, job_id)
    assert evaluation.status is EvaluationStatus.FAILED
    assert evaluation.error_message == f"{error.kind}: {error.message}"
    assert llen(redis_url, QUEUE) == 1  # only the original message: nothing was requeued


# --- reading evaluations ----------------------------------------------------------------


def test_an_unknown_evaluation_is_404(client: TestClient) -> None:
    response = client.get("/v1/evaluations/no-such-evaluation")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_prompts_evaluations_are_listed_newest_first(
    client: TestClient, app_settings: Settings, prompt_id: str
) -> None:
    other_prompt = _create_prompt(client, content="Hi {{ name }} ({{ lang }})")
    created = [_enqueue(client, _body(prompt_id, model=f"echo-{i}")) for i in range(3)]
    _enqueue(client, _body(other_prompt))

    response = client.get(f"/v1/prompts/{prompt_id}/evaluations")

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["id"] for item in items] == list(reversed(created))
    assert [item["model"] for item in items] == ["echo-2", "echo-1", "echo-0"]
    assert all(item["status"] == "pending" for item in items)
    assert all(item["test_results"] is None for item in items)  # scores only, no cases
    limited = client.get(f"/v1/prompts/{prompt_id}/evaluations", params={"limit": 2})
    assert [item["id"] for item in limited.json()["items"]] == list(reversed(created))[:2]
    assert client.get("/v1/prompts/no-such-prompt/evaluations").status_code == 404


# --- score history ----------------------------------------------------------------------


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


def _run(
    settings: Settings,
    prompt_id: str,
    finished: datetime,
    score: float | None,
    to: EvaluationStatus = EvaluationStatus.COMPLETED,
) -> str:
    def unit(session: Any) -> str:
        evaluations = EvaluationRepository(session)
        evaluation = evaluations.add(Evaluation(prompt_id=prompt_id, provider="echo", model="m"))
        evaluations.transition(evaluation.id, EvaluationStatus.RUNNING, at=finished)
        evaluations.transition(evaluation.id, to, overall_score=score, at=finished)
        return evaluation.id

    with ledger(settings) as db:
        return write_transaction(db, unit)


@pytest.fixture
def history(app_settings: Settings) -> tuple[str, str]:
    """A prompt with completed runs over three days of two months, plus runs that do not
    count: failed, cancelled, still running, another prompt's."""
    with ledger(app_settings) as db:
        prompt_id, other_id = write_transaction(
            db,
            lambda s: tuple(
                PromptRepository(s).add(Prompt(title=t, content="x", user_id="u1")).id
                for t in ("mine", "other")
            ),
        )
    for day, hour, score in (
        ("2026-03-01", 0, 0.2),
        ("2026-03-01", 23, 0.6),
        ("2026-03-02", 9, 1.0),
        ("2026-04-15", 12, 0.5),
        ("2026-04-15", 13, 0.25),
        ("2026-04-15", 14, 0.0),
    ):
        _run(app_settings, prompt_id, _at(day, hour), score)
    _run(app_settings, prompt_id, _at("2026-03-01"), None, EvaluationStatus.FAILED)
    _run(app_settings, prompt_id, _at("2026-03-02"), None, EvaluationStatus.CANCELLED)
    _run(app_settings, other_id, _at("2026-03-01"), 0.9)

    def running(session: Any) -> None:
        evaluations = EvaluationRepository(session)
        pending = evaluations.add(Evaluation(prompt_id=prompt_id, provider="echo", model="m"))
        evaluations.transition(pending.id, EvaluationStatus.RUNNING, at=_at("2026-03-02"))

    with ledger(app_settings) as db:
        write_transaction(db, running)
    return prompt_id, other_id


def _points(client: TestClient, prompt_id: str, **params: str) -> list[tuple[str, Any, int]]:
    response = client.get(f"/v1/prompts/{prompt_id}/score-history", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt_id"] == prompt_id
    assert body["bucket"] == params.get("bucket", "day")
    return [(p["bucket"], p["mean_score"], p["runs"]) for p in body["points"]]


def test_score_history_per_day_counts_completed_runs_only(
    client: TestClient, history: tuple[str, str]
) -> None:
    prompt_id, other_id = history

    points = _points(client, prompt_id, bucket="day")

    assert points == [
        ("2026-03-01", pytest.approx(0.4), 2),
        ("2026-03-02", pytest.approx(1.0), 1),
        ("2026-04-15", pytest.approx(0.25), 3),
    ]
    assert _points(client, prompt_id) == points  # day is the default
    assert _points(client, other_id, bucket="day") == [("2026-03-01", pytest.approx(0.9), 1)]


def test_score_history_per_month_and_hour(client: TestClient, history: tuple[str, str]) -> None:
    prompt_id, _ = history

    assert _points(client, prompt_id, bucket="month") == [
        ("2026-03", pytest.approx(0.6), 3),
        ("2026-04", pytest.approx(0.25), 3),
    ]
    hours = _points(client, prompt_id, bucket="hour")
    assert [(bucket, runs) for bucket, _, runs in hours] == [
        ("2026-03-01T00:00", 1),
        ("2026-03-01T23:00", 1),
        ("2026-03-02T09:00", 1),
        ("2026-04-15T12:00", 1),
        ("2026-04-15T13:00", 1),
        ("2026-04-15T14:00", 1),
    ]
    weeks = _points(client, prompt_id, bucket="week")
    # 2026-03-01 is a Sunday and 03-02 a Monday: weeks start on Mondays (%W).
    assert weeks == [
        ("2026-W08", pytest.approx(0.4), 2),
        ("2026-W09", pytest.approx(1.0), 1),
        ("2026-W15", pytest.approx(0.25), 3),
    ]


def test_score_history_of_a_prompt_without_runs_is_empty(client: TestClient) -> None:
    prompt_id = _create_prompt(client)

    assert _points(client, prompt_id, bucket="week") == []


def test_score_history_rejects_an_unknown_bucket_and_prompt(
    client: TestClient, history: tuple[str, str]
) -> None:
    prompt_id, _ = history

    error = _the_error(
        client.get(f"/v1/prompts/{prompt_id}/score-history", params={"bucket": "year"})
    )
    assert error["loc"] == ["query", "bucket"]
    missing = client.get("/v1/prompts/no-such-prompt/score-history")
    assert missing.status_code == 404


def test_the_score_history_query_searches_the_partial_index(
    app_settings: Settings, history: tuple[str, str]
) -> None:
    prompt_id, _ = history
    captured: list[tuple[str, Any]] = []

    def capture(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if "strftime" in statement:
            captured.append((statement, parameters))

    with ledger(app_settings) as db:
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            with db.read_session() as session:
                points = EvaluationRepository(session).score_history(prompt_id, bucket="day")
            # The statement the repository ran, with the parameters it ran with.
            [(statement, parameters)] = captured
            with db.read_session() as session:
                rows = (
                    session.connection()
                    .exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                    .all()
                )
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)

        # The same query, its values written into the SQL, through db.explain.
        label = func.strftime(BUCKET_FORMATS["day"], EvaluationModel.completed_at)
        literal = (
            select(label, func.avg(EvaluationModel.overall_score), func.count())
            .where(
                EvaluationModel.prompt_id == prompt_id,
                EvaluationModel.status == "completed",
            )
            .group_by(label)
            .order_by(label)
        )
        sql = str(literal.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        steps = explain(db, sql)

    assert len(points) == 3
    details = [str(row[3]) for row in rows]
    assert any(INDEX in detail and detail.startswith("SEARCH") for detail in details), details
    assert not any(detail.startswith("SCAN evaluations") for detail in details), details
    plan = render_plan(steps)
    assert f"SEARCH evaluations USING COVERING INDEX {INDEX} (prompt_id=?)" in plan, plan
    assert "SCAN evaluations" not in plan, plan
