"""Idempotency keys in the job ledger, in namespaces that cannot meet.

- ``client:<scope>:<key>``: a key an API client sent in ``Idempotency-Key``. The scope is
  a short hash of the API key that sent it (never the API key itself), so a replay only
  finds jobs of the same API key: another key's ``Idempotency-Key`` and body make a new
  job instead of returning someone else's.
- ``schedule:<kind>:<schedule>:<period>``: made by the scheduler for the job of one
  period of a kind's declared schedule (``<schedule>`` is the schedule's key, e.g. the
  backup kind's ``backup`` and ``drill``). Every client key is stored under ``client:``,
  so no client can create, replay or block a scheduled job by sending its key.
"""

from __future__ import annotations

import hashlib

CLIENT_NAMESPACE = "client:"
SCHEDULE_NAMESPACE = "schedule:"
SCOPE_CHARS = 16  # 64 bits of the hash: tells a deployment's API keys apart

# Keeps the scope from being a plain sha256 of the API key.
_SCOPE_DOMAIN = b"autoforge idempotency scope\x00"


def client_scope(api_key: str) -> str:
    """Who sent a key: a short hash of the API key that authenticated the request."""
    return hashlib.sha256(_SCOPE_DOMAIN + api_key.encode()).hexdigest()[:SCOPE_CHARS]


def client_key(scope: str, key: str) -> str:
    """The ledger's key for ``key`` sent by the client with ``scope``."""
    return f"{CLIENT_NAMESPACE}{scope}:{key}"


def schedule_key(kind: str, schedule: str, period: str) -> str:
    """The ledger's key for the job of one period (e.g. ``2026-05-01``) of the schedule
    whose key is ``schedule``."""
    return f"{SCHEDULE_NAMESPACE}{kind}:{schedule}:{period}"


def key_shown_to_clients(stored: str | None) -> str | None:
    """What the API shows of a stored key: the client's own key, without its scope.

    Keys of other namespaces (the scheduler's) are not the client's: shown as ``None``.
    """
    if stored is None or not stored.startswith(CLIENT_NAMESPACE):
        return None
    _, _, key = stored[len(CLIENT_NAMESPACE) :].partition(":")
    return key
