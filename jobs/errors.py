"""Errors of running jobs, in the closed tree of :mod:`core.errors`."""

from __future__ import annotations

from core.errors import PermanentError


class JobTimedOut(PermanentError):
    """The job ran past its time limit."""


class AttemptsExhausted(PermanentError):
    """The job used up its attempts."""


class JobSuperseded(PermanentError):
    """The job was cancelled or finished by another delivery while this attempt ran."""


__all__ = ["AttemptsExhausted", "JobSuperseded", "JobTimedOut"]
