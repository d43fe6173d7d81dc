"""Errors of replica syncs, in the closed tree of :mod:`core.errors`. None carries a token."""

from __future__ import annotations

from core.errors import PermanentError, TransientError


class SyncUnavailable(TransientError):
    """The primary could not be reached or answered with a temporary failure."""


class SyncTimedOut(TransientError):
    """The sync did not finish before REPLICA_SYNC_TIMEOUT_S; its process was killed."""


class SyncRefused(PermanentError):
    """The primary refused the replica's credentials."""


class PrimaryMissing(PermanentError):
    """The primary database does not exist at the replica's sync URL."""


class SyncFailed(PermanentError):
    """The sync failed in a way retrying cannot fix."""
