"""Errors of the job engine, in the closed tree of :mod:`core.errors`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import PermanentError


class JobTimedOut(PermanentError):
    """The job ran past its time limit."""


class AttemptsExhausted(PermanentError):
    """The job used up its attempts."""


class JobSuperseded(PermanentError):
    """The job was cancelled or finished by another delivery while this attempt ran."""


class UnknownKind(PermanentError):
    """No job kind of that name is declared."""


class KindDisabled(PermanentError):
    """The job kind is declared but does not accept new jobs."""


class UndeclaredSchedule(PermanentError):
    """No job kind declares a schedule that fires this job."""


@dataclass(frozen=True, slots=True)
class ArgumentProblem:
    """One reason a job's arguments cannot be used; ``loc`` is where, inside them."""

    loc: tuple[str | int, ...]
    message: str


class InvalidArguments(PermanentError):
    """The job's arguments cannot be used."""

    def __init__(self, problems: Sequence[ArgumentProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "; ".join(".".join(map(str, p.loc)) + f": {p.message}" for p in self.problems)
        )


__all__ = [
    "ArgumentProblem",
    "AttemptsExhausted",
    "InvalidArguments",
    "JobSuperseded",
    "JobTimedOut",
    "KindDisabled",
    "UndeclaredSchedule",
    "UnknownKind",
]
