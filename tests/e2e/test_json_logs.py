"""``LOG_FORMAT=json`` in a real worker: one JSON object per log line, the job on its lines.

A Celery worker process runs with ``LOG_FORMAT=json``; jobs are enqueued through the API in
this process. Its log file is read back line by line: every log record is a JSON object with
``time``, ``level``, ``logger`` and ``message``, and the lines written while a job runs
(the engine's, the job's own, and those of threads the job starts) carry its ``job_id``,
``kind`` and ``attempt``. Lines of the worker itself carry no job. The API server's
lines, uvicorn's included, are JSON as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from domain.jobs import JobStatus
from tests.support.api_server import run_api_server
from tests.support.evaluation import EVALUATION_TIMINGS, EvaluationApi, evaluation_body
from tests.support.fake_llm_server import FakeLLMServer, Reply
from tests.support.processes import CeleryProcess, open_pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOB_FIELDS = ("job_id", "kind", "attempt")
OPENAI_KEY = "sk-json-logs-NEVER-PRINT-51c0"


def _records(worker: CeleryProcess) -> list[dict[str, Any]]:
    """The worker's log records: every line that is not Celery's start-up banner."""
    records = []
    for line in worker.log_text().splitlines():
        if not line.startswith("{"):
            # Celery prints its banner (and nothing else) straight to stdout.
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _banner_only(worker: CeleryProcess) -> None:
    """Lines that are not JSON come from the banner, printed before the first record."""
    lines = worker.log_text().splitlines()
    first_record = next(i for i, line in enumerate(lines) if line.startswith("{"))
    strays = [line for line in lines[first_record:] if line.strip() and not line.startswith("{")]
    assert strays == [], "lines that are not JSON after the banner"


def test_a_jobs_lines_carry_its_id_kind_and_attempt(tmp_path: Path, redis_url: str) -> None:
    with open_pipeline(tmp_path, redis_url, log_format="json") as pipeline:
        worker = pipeline.start_worker()
        with pipeline.api_client() as client:
            response = client.post("/v1/jobs/canary", json={"fail_times": 2})
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
        pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=60)
        wait_until(
            lambda: any(f"[{job_id}] succeeded" in r["message"] for r in _records(worker)),
            timeout=30,
            what="the worker logs the task's end",
            describe=pipeline.describe,
        )

        records = _records(worker)
        _banner_only(worker)
        for record in records:
            assert {"time", "level", "logger", "message"} <= record.keys(), record
            assert record["time"].endswith("+00:00"), record
        ours = [r for r in records if r.get("job_id") == job_id]
        retries = [r for r in ours if "failed transiently" in r["message"]]
        assert [r["attempt"] for r in retries] == [1, 2], ours
        assert all(r["kind"] == "canary" for r in ours), ours
        assert all(f"attempt {r['attempt']} failed" in r["message"] for r in retries)
        # Every line about the job written while it ran says which job it is ...
        for record in records:
            if f"job {job_id} attempt" in record["message"]:
                assert record.get("job_id") == job_id, record
        # ... and the worker's own lines name no job.
        ready = [r for r in records if r["message"].endswith(" ready.")]
        assert ready, records
        assert not any(field in ready[0] for field in JOB_FIELDS)
        received = [r for r in records if r["message"].startswith("Task ")]
        assert received, records
        assert not any("job_id" in r for r in received)


def test_threads_a_job_starts_log_with_its_fields(tmp_path: Path, redis_url: str) -> None:
    with (
        FakeLLMServer() as server,
        open_pipeline(
            tmp_path,
            redis_url,
            log_format="json",
            openai_base_url=server.base_url,
            openai_api_key=OPENAI_KEY,
            **EVALUATION_TIMINGS,
        ) as pipeline,
        EvaluationApi(pipeline) as api,
    ):
        # The first call fails with a 500: the provider retries from the run's own thread.
        server.script(Reply.server_error())
        worker = pipeline.start_worker(("evaluations", "maintenance"))
        prompt_id = api.create_prompt("Say {{ word }}.")
        cases = [
            {"name": "one", "variables": {"word": "hi"}, "expected": "hi", "scorers": ["contains"]}
        ]
        job_id = api.enqueue(evaluation_body(prompt_id, cases))
        pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=60)

        retried = [r for r in _records(worker) if "provider call failed" in r["message"]]
        assert retried, worker.log_tail()
        assert [(r.get("job_id"), r.get("kind"), r.get("attempt")) for r in retried] == [
            (job_id, "evaluation", 1)
        ]
        assert OPENAI_KEY not in worker.log_text()


def test_the_api_server_logs_json_too(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> None:
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        DATABASE_URL=str(db_path),
        REDIS_URL=redis_url,
        AUTOFORGE_API_KEYS="afk_json-logs",
        LOG_FORMAT="json",
    )
    with run_api_server(tmp_path, env, tmp_path / "api.log") as api:
        assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 200

    records = [json.loads(line) for line in api.log_text().splitlines() if line.strip()]
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, records
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any("GET /readyz" in r["message"] for r in access), access
