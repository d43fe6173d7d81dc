"""What a worker or API process holds: settings, the declared job kinds, the database, the
job publisher, and (in a worker) lease renewal.

Built from the settings without connecting to anything; connections are made lazily in
the process that uses them (see :class:`db.database.Database`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import redis

from core.settings import Settings
from db.database import Database
from jobs.leases import LeaseRenewal
from jobs.publisher import JobPublisher
from jobs.registry import KindRegistry


@dataclass
class Runtime:
    settings: Settings
    kinds: KindRegistry
    db: Database
    publisher: JobPublisher
    leases: LeaseRenewal
    broker_url: str = field(repr=False, default="")
    _redis: redis.Redis | None = field(default=None, repr=False)
    _redis_pid: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def redis(self) -> redis.Redis:
        """A Redis client for this process (rate limits), made on first use after fork."""
        with self._lock:
            if self._redis is None or self._redis_pid != os.getpid():
                self._redis = redis.Redis.from_url(
                    self.broker_url, socket_connect_timeout=5, socket_timeout=10
                )
                self._redis_pid = os.getpid()
            return self._redis
