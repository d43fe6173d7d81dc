"""Helpers for end-to-end evaluation runs (this module holds no tests).

- :data:`EVALUATION_TIMINGS`: settings for a :class:`~tests.support.processes.Pipeline`
  whose workers run evaluations with short timings;
- :class:`EvaluationApi`: the API in the test process (a ``TestClient``) over the
  pipeline's database and Redis, with waits that fail with the job row, the evaluation
  row and the workers' log tails;
- :class:`ByMessage`: a :class:`~tests.support.fake_llm_server.FakeLLMServer` responder
  that scripts answers per user message (cases run concurrently, so one shared queue of
  replies would not say which case gets which);
- small readers: test result rows, Redis-clock admissions of the shared rate limit,
  which pool processes hold a connection to a port.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from db.models import TestResultModel
from db.repositories.evaluations import EvaluationRepository
from tasks.registry import kind_registry
from tests.support.fake_llm_server import RecordedRequest, Reply, Responder, echo_responder
from tests.support.processes import Pipeline, wait_for

API_KEY = "e2e-evaluation-api-key"
FINAL_EVALUATION_STATUSES = ("completed", "failed", "cancelled")

#: Worker settings for evaluation runs: a lost job comes back within seconds.
EVALUATION_TIMINGS: Mapping[str, Any] = {
    "job_time_limits_s": dict.fromkeys(kind_registry().names, 30),
    "celery_visibility_timeout_s": 40,
    "job_retry_backoff_s": 0.2,
    "job_retry_backoff_max_s": 2,
    "celery_unacked_restore_interval_s": 1,
    "job_lease_s": 3,
    "sweeper_interval_s": 1,
    "outbox_republish_after_s": 5,
}


# --- the API over a pipeline ------------------------------------------------------------


class EvaluationApi:
    """``/v1`` in the test process, on the pipeline's database and Redis."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        app = create_app(pipeline.settings_with(autoforge_api_keys=API_KEY))
        self.client = TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"})

    def __enter__(self) -> EvaluationApi:
        self.client.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.client.__exit__(exc_type, exc, tb)

    def create_prompt(self, content: str, *, system_message: str | None = None) -> str:
        response = self.client.post(
            "/v1/prompts",
            json={
                "title": "e2e",
                "content": content,
                "user_id": "e2e",
                "system_message": system_message,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def enqueue(self, body: Mapping[str, Any]) -> str:
        response = self.client.post("/v1/jobs/evaluation", json=dict(body))
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.get(f"/v1/jobs/{job_id}")
        return job

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        evaluation: dict[str, Any] = self.get(f"/v1/evaluations/{evaluation_id}")
        return evaluation

    def describe(self, evaluation_ids: Iterable[str]) -> str:
        """Job rows, evaluation rows, queue depth and worker logs, for failure messages."""
        parts = []
        for evaluation_id in evaluation_ids:
            with self.pipeline.runtime.db.read_session() as session:
                evaluation = EvaluationRepository(session).get(evaluation_id, with_results=False)
            parts.append(f"evaluation: {evaluation}")
        try:
            parts.append(f"evaluations queue: {self.pipeline.queue_length('evaluations')}")
        except redis.RedisError as exc:
            parts.append(f"redis unreadable: {exc!r}")
        parts.append(self.pipeline.describe(evaluation_ids))
        return "\n".join(parts)

    def wait_for_evaluation(
        self, evaluation_id: str, status: str, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until the evaluation is ``status``; another final status fails at once."""

        def probe() -> dict[str, Any] | None:
            evaluation = self.evaluation(evaluation_id)
            if evaluation["status"] == status:
                return evaluation
            if evaluation["status"] in FINAL_EVALUATION_STATUSES:
                pytest.fail(
                    f"evaluation {evaluation_id} ended {evaluation['status']}, expected "
                    f"{status}\n{self.describe([evaluation_id])}",
                    pytrace=False,
                )
            return None

        return wait_for(
            probe,
            timeout=timeout,
            what=f"evaluation {evaluation_id} {status}",
            describe=lambda: self.describe([evaluation_id]),
        )


def result_rows(pipeline: Pipeline, evaluation_id: str) -> int:
    """How many ``test_results`` rows the evaluation has (counted in SQL)."""
    with pipeline.runtime.db.read_session() as session:
        count = session.scalar(
            select(func.count())
            .select_from(TestResultModel)
            .where(TestResultModel.evaluation_id == evaluation_id)
        )
    return int(count or 0)


def evaluation_body(
    prompt_id: str, cases: Iterable[Mapping[str, Any]], **fields: Any
) -> dict[str, Any]:
    """A ``POST /v1/jobs/evaluation`` body (provider ``openai``, model ``gpt-e2e``)."""
    return {
        "prompt_id": prompt_id,
        "provider": "openai",
        "model": "gpt-e2e",
        "test_cases": [dict(case) for case in cases],
        **fields,
    }


# --- scripting the fake server per user message --------------------------------------------


class ByMessage:
    """A responder: per user message, scripted replies in order, then ``default``.

    A script entry may be a :class:`Reply` or a callable of the request (e.g. one that
    blocks on a gate). Thread-safe: the server answers from a thread per connection.
    """

    def __init__(self, default: Responder = echo_responder) -> None:
        self.default = default
        self._scripts: dict[str, deque[Reply | Responder]] = defaultdict(deque)
        self._lock = threading.Lock()

    def script(self, message: str, *replies: Reply | Responder) -> None:
        with self._lock:
            self._scripts[message].extend(replies)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            script = self._scripts.get(request.user_message or "")
            reply = script.popleft() if script else self.default
        return reply if isinstance(reply, Reply) else reply(request)


def gated(gate: threading.Event, *, timeout: float = 30.0) -> Responder:
    """An echo that holds every answer until ``gate`` is set (or ``timeout`` passes)."""

    def respond(request: RecordedRequest) -> Reply:
        gate.wait(timeout)
        return Reply.completion(request.user_message or "")

    return respond


def slow_echo(delay_s: float) -> Responder:
    """An echo that answers each request after ``delay_s``."""

    def respond(request: RecordedRequest) -> Reply:
        return Reply.completion(request.user_message or "", delay_s=delay_s)

    return respond


def requests_for(requests: Iterable[RecordedRequest], message: str) -> list[RecordedRequest]:
    return [request for request in requests if request.user_message == message]


def most_in_any_window(times: Iterable[float], window_s: float) -> int:
    """The largest number of ``times`` inside one half-open interval ``[t, t + window_s)``."""
    ordered = sorted(times)
    most = 0
    for i, start in enumerate(ordered):
        most = max(most, sum(1 for t in ordered[i:] if t < start + window_s))
    return most


# --- the shared rate limit, as Redis records it ---------------------------------------------


class AdmissionRecorder:
    """Collects every admission of a sliding-window rate limit (its sorted set in Redis).

    The limiter keeps each admission (member: a unique token, score: its time in µs on
    the Redis clock) for at least one window; polling much more often than that sees
    every one of them.
    """

    def __init__(self, redis_url: str, key: str, *, every_s: float = 0.05) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._key = key
        self._every_s = every_s
        self._seen: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admissions", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> AdmissionRecorder:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()
        self._client.close()

    def _poll(self) -> None:
        entries = cast(
            "list[tuple[bytes, float]]", self._client.zrange(self._key, 0, -1, withscores=True)
        )
        for member, score in entries:
            self._seen[member] = score / 1_000_000

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._poll()
            except redis.RedisError as exc:  # reported by the test, never swallowed
                self.error = exc
                return

    @property
    def admitted(self) -> list[float]:
        """Admission times (seconds, Redis clock), oldest first."""
        return sorted(self._seen.values())


# --- processes and their connections ------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = entry.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    return inodes


def _inodes_connected_to(port: int) -> set[str]:
    """Inodes of the TCP sockets (IPv4, this network namespace) whose peer is ``port``."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == port:
            inodes.add(fields[9])
    return inodes


def processes_connected_to(port: int, candidates: Iterable[int]) -> list[int]:
    """Those of ``candidates`` (pids) holding a TCP connection to ``port`` on loopback."""
    connected = _inodes_connected_to(port)
    return [pid for pid in candidates if _socket_inodes(pid) & connected]


__all__ = [
    "API_KEY",
    "EVALUATION_TIMINGS",
    "AdmissionRecorder",
    "ByMessage",
    "EvaluationApi",
    "evaluation_body",
    "gated",
    "most_in_any_window",
    "processes_connected_to",
    "requests_for",
    "result_rows",
    "slow_echo",
]
