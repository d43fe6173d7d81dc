"""Errors of the canary job."""

from __future__ import annotations

from core.errors import TransientError


class CanaryFailure(TransientError):
    """The canary failed on purpose (it was asked to)."""
