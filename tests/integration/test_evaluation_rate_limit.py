"""The shared rate limit against a real Redis, from threads and from two OS processes.

The window is configurable so that the tests take seconds: a limit of 3 per 2 s window
behaves as 3 per minute would, sixty times slower.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from core.errors import ConfigurationError
from providers.llm import CompletionRequest, OpenAIProvider
from providers.rate_limit import (
    RateLimiter,
    RateLimiterUnavailable,
    RateLimitTimeout,
    Unlimited,
    limiter_for,
)
from tasks.evaluation.run import run_evaluation
from tasks.evaluation.spec import EvaluationSpec
from tests.conftest import make_settings
from tests.support.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.integration

LIMIT = 3
WINDOW_S = 2.0
REQUESTS_PER_PROCESS = 4


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The largest number of ``times`` inside one half-open interval of ``window_s``."""
    ordered = sorted(times)
    most = 0
    for i, start in enumerate(ordered):
        inside = [t for t in ordered[i:] if t < start + window_s]
        most = max(most, len(inside))
    return most


def test_admits_the_limit_then_waits_for_the_oldest_to_leave(client: redis.Redis) -> None:
    limiter = RateLimiter(client, "openai", 2, window_s=1.0)
    first = limiter.acquire(timeout_s=5)
    second = limiter.acquire(timeout_s=5)
    third = limiter.acquire(timeout_s=5)
    assert second - first < 1.0
    assert third - first >= 1.0  # on the Redis clock: the window is the behaviour under test
    assert most_in_any_window([first, second, third], 1.0) == 2


def test_a_full_window_times_out_transiently_with_the_wait_needed(client: redis.Redis) -> None:
    limiter = RateLimiter(client, "openai", 1, window_s=30.0)
    limiter.acquire(timeout_s=1)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout) as caught:
        limiter.acquire(timeout_s=0.5)
    # It knows the wait exceeds the timeout: no point sleeping first.
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after is not None
    assert 29.0 < caught.value.retry_after <= 30.0
    assert "rate limit of 'openai' (1 per 30 s)" in caught.value.message


def test_limits_are_per_provider(client: redis.Redis) -> None:
    RateLimiter(client, "openai", 1, window_s=30.0).acquire(timeout_s=1)
    RateLimiter(client, "other", 1, window_s=30.0).acquire(timeout_s=1)
    assert RateLimiter(client, "openai", 1, window_s=30.0).try_acquire()[0] is False


def test_redis_away_is_a_transient_error_of_its_own() -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    with pytest.raises(RateLimiterUnavailable, match="Redis did not answer"):
        RateLimiter(unreachable, "openai", 5).acquire(timeout_s=1)
    unreachable.close()


def test_limiter_for_reads_the_settings(client: redis.Redis, db_path: Path) -> None:
    settings = make_settings(db_path, provider_rpm={"openai": 7})
    limiter = limiter_for(client, "openai", settings)
    assert isinstance(limiter, RateLimiter)
    assert (limiter.limit, limiter.window_s) == (7, 60.0)
    assert isinstance(limiter_for(client, "echo", settings), Unlimited)
    with pytest.raises(ConfigurationError, match="PROVIDER_RPM for 'openai' must be at least 1"):
        limiter_for(client, "openai", make_settings(db_path, provider_rpm={"openai": 0}))


def make_requests(redis_url: str, base_url: str, count: int, out_file: str) -> None:
    """One worker process: ``count`` calls, each admitted by the shared limiter first."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, "openai", LIMIT, window_s=WINDOW_S)
    admitted = []
    with OpenAIProvider(base_url=base_url, api_key=SecretStr("sk-x"), timeout_s=10) as provider:
        for i in range(count):
            admitted.append(limiter.acquire(timeout_s=30))
            provider.complete(CompletionRequest(model="m", prompt=f"{out_file} {i}"))
    client.close()
    Path(out_file).write_text(json.dumps(admitted))


@pytest.mark.slow
def test_two_processes_never_exceed_the_limit_in_any_window(redis_url: str, tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    outputs = [tmp_path / "worker-a.json", tmp_path / "worker-b.json"]
    with FakeLLMServer() as server:
        workers = [
            spawn.Process(
                target=make_requests,
                args=(redis_url, server.base_url, REQUESTS_PER_PROCESS, str(out)),
            )
            for out in outputs
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        assert [w.exitcode for w in workers] == [0, 0]
        arrivals = [request.at for request in server.requests]

    admitted = [json.loads(out.read_text()) for out in outputs]
    # Both made progress: each finished all its calls.
    assert [len(times) for times in admitted] == [REQUESTS_PER_PROCESS] * 2
    everything = [t for times in admitted for t in times]
    assert len(arrivals) == len(everything) == 2 * REQUESTS_PER_PROCESS
    # The guarantee, on the Redis clock that decides: never more than LIMIT per window.
    assert most_in_any_window(everything, WINDOW_S) == LIMIT
    # As the server saw them (its own clock, plus each request's trip): a window shortened
    # by a generous allowance for that trip still holds at most LIMIT.
    assert most_in_any_window(arrivals, WINDOW_S - 0.5) <= LIMIT
    # 8 calls at 3 per window need at least two full windows after the first call.
    assert max(everything) - min(everything) >= 2 * WINDOW_S


def test_a_run_with_the_shared_limit(redis_url: str, client: redis.Redis) -> None:
    spec = EvaluationSpec.model_validate(
        {
            "prompt_id": "p-1",
            "provider": "openai",
            "model": "m",
            "test_cases": [
                {
                    "name": f"c{i}",
                    "variables": {"q": f"c{i}"},
                    "expected": f"c{i}",
                    "scorers": ["exact"],
                }
                for i in range(5)
            ],
        }
    )
    limiter = RateLimiter(client, "openai", 2, window_s=1.0)
    with (
        FakeLLMServer() as server,
        OpenAIProvider(base_url=server.base_url, api_key=None, timeout_s=5) as provider,
    ):
        outcome = run_evaluation(
            spec, "{{ q }}", None, provider, limiter=limiter, max_concurrency=4
        )
        arrivals = [request.at for request in server.requests]
    assert outcome.metrics.passed_cases == 5
    assert len(arrivals) == 5
    # 5 calls at 2 per second: 3 windows, as admitted on the Redis clock. The server sees
    # each call after its own trip through the client (the first one's also loads the
    # SDK's chat module): a small allowance for the difference.
    assert max(arrivals) - min(arrivals) >= 2 * 1.0 - 0.1
    assert most_in_any_window(arrivals, 1.0 - 0.3) <= 2
