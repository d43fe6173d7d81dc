"""The broker's Redis transport: kombu's own, safe to use after its connection was lost.

When a worker loses Redis, Celery detaches the lost connection from its transport and
closes it. kombu's Redis channel then still tries to hand back the messages it had
delivered (on close), and a job that kept running meanwhile acknowledges its message on
that same channel when it finishes. Both need the detached connection's settings and, in
kombu 5.7, fail with ``AttributeError``, which Celery takes for a bug: the worker stops.
Here they fail as what they are, a lost connection, which Celery logs and carries on
from. The messages stay in Redis's set of unacknowledged ones and come back after the
visibility timeout, if Redis kept them; the ledger decides whether a job still has to run.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES, _transport_cache
from kombu.transport import redis as kombu_redis

#: The URL schemes this transport serves (kombu's Redis transport serves the same).
SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    """A Redis channel whose use after its connection was lost raises ``ConnectionError``."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel was lost")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def use_for_redis_urls() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use :class:`Transport` in this
    process. URLs keep their scheme, so logs and Flower show them as before."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        # kombu caches the class of each alias once resolved.
        _transport_cache.pop(scheme, None)
