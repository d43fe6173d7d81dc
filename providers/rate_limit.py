"""A per-provider request rate shared by every worker, kept in Redis.

A sliding-window log: one sorted set per provider holds the admission time of every
request in the last window. One Lua script, run atomically by Redis, drops entries older
than the window, admits the request if fewer than the limit remain, and otherwise answers
how long until the oldest one leaves. The clock is Redis's own (``TIME``), so workers on
machines with skewed clocks still share one timeline.

Guarantee: in ANY interval of ``window_s`` (half-open, on the Redis clock) at most
``limit`` requests are admitted, however many processes ask.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import redis

from core.errors import ConfigurationError, TransientError
from core.settings import Settings
from providers.errors import ProviderTransientError

DEFAULT_WINDOW_S = 60.0
KEY_PREFIX = "autoforge:rate-limit:"

# KEYS[1]: the provider's sorted set (member: a unique token, score: admission time in µs).
# ARGV[1]: the limit; ARGV[2]: the window in µs; ARGV[3]: this request's unique token.
# Returns {1, now} when admitted, {0, wait} (µs until a slot frees) when not.
# Times go to Redis as strings formatted here: Lua numbers are doubles, exact to 2^53 µs.
_SLIDING_WINDOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {1, string.format('%.0f', now)}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, string.format('%.0f', tonumber(oldest[2]) + window - now)}
"""


class Limiter(Protocol):
    """Something that admits requests: :class:`RateLimiter`, or :class:`Unlimited`."""

    def acquire(self, timeout_s: float) -> float: ...


class RateLimitTimeout(ProviderTransientError):
    """No slot under the provider's rate limit came free in time."""


class RateLimiterUnavailable(TransientError):
    """Redis, which keeps the shared rate limit, did not answer."""


class RateLimiter:
    """At most ``per_minute`` requests to ``provider`` per window, across all processes.

    ``window_s`` is a minute unless a test needs a shorter one. The client may be shared by
    threads (redis-py's connection pool is thread-safe).
    """

    def __init__(
        self,
        client: redis.Redis,
        provider: str,
        per_minute: int,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1:
            raise ConfigurationError(
                f"PROVIDER_RPM for {provider!r} must be at least 1; got {per_minute}"
            )
        if window_s <= 0:
            raise ConfigurationError(f"the rate-limit window must be positive; got {window_s}")
        self.provider = provider
        self.limit = per_minute
        self.window_s = window_s
        self.key = KEY_PREFIX + provider
        self._script = client.register_script(_SLIDING_WINDOW)
        self._sleep = sleep

    def try_acquire(self) -> tuple[bool, float]:
        """One attempt: ``(True, admitted_at)`` in Redis seconds, or ``(False, wait_s)``."""
        token = uuid.uuid4().hex
        try:
            admitted, value = self._script(
                keys=[self.key], args=[self.limit, round(self.window_s * 1_000_000), token]
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(
                f"rate limit of {self.provider!r}: Redis did not answer ({type(exc).__name__})"
            ) from exc
        return bool(int(admitted)), int(value) / 1_000_000

    def acquire(self, timeout_s: float) -> float:
        """Wait for a slot; returns when the request was admitted (Redis clock, seconds).

        Raises :class:`RateLimitTimeout` (a transient provider error, carrying the wait
        still needed as ``retry_after``) if no slot frees within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            admitted, value = self.try_acquire()
            if admitted:
                return value
            remaining = deadline - time.monotonic()
            if value > remaining:
                raise RateLimitTimeout(
                    f"rate limit of {self.provider!r} ({self.limit} per {self.window_s:g} s): "
                    f"no slot within {timeout_s:g} s",
                    retry_after=value,
                )
            # A little jitter so that waiters woken by the same expiry do not all collide.
            self._sleep(value + random.uniform(0.001, 0.02))


class Unlimited:
    """No rate limit (the echo provider, or a provider without a configured rate)."""

    def acquire(self, timeout_s: float) -> float:
        return time.time()


def limiter_for(client: redis.Redis, provider: str, settings: Settings) -> Limiter:
    """The shared limit of ``provider`` from ``PROVIDER_RPM``, or none if it has no entry."""
    per_minute = settings.provider_rpm.get(provider)
    if per_minute is None:
        return Unlimited()
    return RateLimiter(client, provider, per_minute, window_s=settings.provider_rate_window_s)
