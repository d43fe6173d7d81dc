"""Beat's scheduler: RedBeat, made to ride out Redis outages of any length.

RedBeat keeps the schedule in Redis under a lock, so that of several beat processes only
the lock holder fires. Plain RedBeat lets the first Redis ``ConnectionError`` in
``tick()`` (or in ``close()``, on the way out) end the process; then the outbox sweeper
never runs again and jobs accepted while Redis was away stay ``queued``.

:class:`OutageTolerantScheduler` instead:

- treats a Redis connection error or timeout anywhere in a tick as an outage: it logs
  once, fires nothing, and looks again every :attr:`~OutageTolerantScheduler.outage_retry_s`;
- fires only in a tick that began by extending the lock, or by taking it with
  ``SET NX`` when it is free (it expired during the outage, or Redis came back empty):
  of two beats only one gets it, and the other stands by, as at start-up;
- after taking the lock, writes back every schedule entry Redis lost, with the last run
  time this process saw, so none fires twice for one period, and fires the entries of
  :data:`~workers.beat.DUE_WHEN_REDIS_RETURNS` (the outbox sweeper) at once, as it does
  when Redis comes back: jobs accepted meanwhile wait for them;
- starts even while Redis is down, and stops promptly while it is down.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis
from celery.utils.time import humanize_seconds
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    ensure_conf,
    get_redis,
)
from redis.backoff import NoBackoff
from redis.exceptions import LockError
from redis.lock import Lock
from redis.retry import Retry

from workers.beat import DUE_WHEN_REDIS_RETURNS

log = logging.getLogger("autoforge.beat")

#: What a Redis outage looks like to a client (``BusyLoadingError``, a server still
#: reading its append-only file, is a ``ConnectionError`` too).
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


class OutageTolerantScheduler(RedBeatScheduler):  # type: ignore[misc]
    """A RedBeat scheduler that survives Redis going away and coming back, even empty."""

    #: Seconds between looks at Redis during an outage.
    outage_retry_s = 1.0
    #: Entries fired at once after an outage or on taking the lock.
    due_when_redis_returns: tuple[str, ...] = DUE_WHEN_REDIS_RETURNS
    #: The schedule lock while this beat holds it.
    lock: Lock | None = None
    #: Always None: RedBeat's own handling of the lock is off (see ``lock_name``).
    lock_key: str | None = None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        # Set before the base class sets up the schedule (which talks to Redis).
        self._outage_since: float | None = None
        #: The lock token under which this process last wrote the schedule back.
        self._seeded_token: bytes | str | None = None
        #: Each entry's last run as this process last saw it (from Redis, or its own fire).
        self._last_runs: dict[str, datetime] = {}
        ensure_conf(app)
        # One immediate retry covers a pooled connection that the server closed; anything
        # longer is an outage, which tick() handles. redis-py's default would back off
        # for up to 14 s per command, making each tick (and a stop) that slow.
        get_redis(app).set_retry(Retry(NoBackoff(), 1))
        super().__init__(app, **kwargs)
        # The lock is ours to take, in tick(): RedBeat would take it at start-up in a
        # signal handler that blocks until it gets it and fails (loudly) on an outage.
        self.lock_name = str(self.lock_key)
        self.lock_key = None

    # --- start-up and the schedule --------------------------------------------------------

    def setup_schedule(self) -> None:
        """Write the static schedule to Redis; if Redis is down, the first tick after it
        returns does (under the lock)."""
        try:
            super().setup_schedule()
            self._remember_last_runs()
        except REDIS_UNAVAILABLE as exc:
            self._outage(exc)

    def _seed_schedule(self) -> None:
        """Write back the entries Redis lost (keeping the last runs it still has)."""
        client = get_redis(self.app)
        restored = []
        for name, definition in self.app.redbeat_conf.schedule.items():
            key = self.Entry.generate_key(self.app, name)
            if client.exists(key):
                continue
            # A new entry counts as just run; one this process saw run keeps that time.
            entry = self.Entry(**dict(definition, name=name, app=self.app))
            if name in self._last_runs:
                entry.last_run_at = self._last_runs[name]
            entry.save()
            restored.append(name)
        if restored:
            log.warning(
                "beat: Redis had lost schedule entries %s; wrote them back with their last runs",
                ", ".join(sorted(restored)),
            )
        # Keeps definitions current and the record of static entries, as at start-up.
        super().setup_schedule()
        self._remember_last_runs()

    def _make_due_now(self) -> None:
        for name in self.due_when_redis_returns:
            try:
                entry = self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)
            except KeyError:
                continue  # not in this schedule
            # A last run long ago: due at the next look, which is now.
            entry.reschedule(last_run_at=LONG_AGO)

    def _remember_last_runs(self) -> None:
        client = get_redis(self.app)
        names = list(self.app.redbeat_conf.schedule)
        with client.pipeline() as pipe:
            for name in names:
                pipe.hget(self.Entry.generate_key(self.app, name), "meta")
            metas = pipe.execute()
        for name, meta in zip(names, metas, strict=True):
            last_run = self.Entry.decode_meta(meta).get("last_run_at")
            if last_run is not None:
                self._last_runs[name] = last_run

    def reserve(self, entry: Any) -> Any:
        new_entry = super().reserve(entry)
        if new_entry.last_run_at is not None:
            self._last_runs[new_entry.name] = new_entry.last_run_at
        return new_entry

    # --- ticking --------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass: hold the lock (or stand by), then fire what is due.

        Returns the seconds until the next pass.
        """
        try:
            lock = self._hold_lock()
            returned = self._back()
            if lock is None:
                # Standing by; should this beat take over from an emptied Redis, it
                # writes the entries back with what it saw last.
                self._remember_last_runs()
                return float(self.max_interval)
            if self._seeded_token != lock.local.token:
                self._seed_schedule()
                self._seeded_token = lock.local.token
                returned = True
            if returned:
                self._make_due_now()
            interval = float(super().tick(*args, **kwargs))
            self._remember_last_runs()
            return interval
        except REDIS_UNAVAILABLE as exc:
            self._outage(exc)
            return self.outage_retry_s

    def _hold_lock(self) -> Lock | None:
        """The schedule lock if this beat holds it now (extended, or newly taken)."""
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
            except LockError:
                # Expired during an outage, or Redis came back without it.
                log.warning("beat: the schedule lock was lost; trying to take it again")
                self.lock = None
            else:
                return self.lock
        lock = self._new_lock()
        if not lock.acquire(blocking=False):
            return None  # another beat holds it and fires; we stand by
        self.lock = lock
        # RedBeat's own words, so that one line tells which beat fires.
        log.info("beat: Acquired lock")
        return lock

    def _new_lock(self) -> Lock:
        # As RedBeat does at start-up: its extend script sets the timeout rather than
        # adding to it.
        client = get_redis(self.app)
        lock: Lock = client.lock(self.lock_name, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def maybe_due(self, entry: Any, **kwargs: Any) -> Any:
        """Fire ``entry`` if it is due; an outage goes up to :meth:`tick`."""
        is_due, next_time_to_run = entry.is_due()
        if is_due:
            log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
            try:
                self.apply_async(entry, **kwargs)
            except REDIS_UNAVAILABLE:
                raise
            except Exception as exc:  # a publish that failed: the next period fires again
                log.exception("Scheduler: Message Error: %s", exc)
        return next_time_to_run

    @property
    def info(self) -> str:
        """What ``celery beat`` prints about the scheduler at start-up."""
        return (
            f"{super().info}\n       . lock -> `{self.lock_name}` "
            f"{humanize_seconds(self.lock_timeout)} ({self.lock_timeout}s)"
        )

    # --- outages --------------------------------------------------------------------------

    def _outage(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "beat: Redis is unreachable (%s); firing nothing until it is back "
                "(looking every %g s)",
                exc,
                self.outage_retry_s,
            )

    def _back(self) -> bool:
        """Note that Redis answers; whether it had been away."""
        if self._outage_since is None:
            return False
        log.warning("beat: Redis is back after %.0f s", time.monotonic() - self._outage_since)
        self._outage_since = None
        return True

    # --- stopping -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock if Redis answers (else it expires by itself), then close."""
        lock, self.lock = self.lock, None
        if lock is not None:
            try:
                if lock.owned():
                    log.info("beat: Releasing lock")
                    lock.release()
            except (redis.ConnectionError, redis.TimeoutError, LockError) as exc:
                log.warning(
                    "beat: could not release the schedule lock (%s); it expires in %s s",
                    exc,
                    self.lock_timeout,
                )
        # RedBeat's close() would try the lock again; the base class releases the rest.
        super(RedBeatScheduler, self).close()
