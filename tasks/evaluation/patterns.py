"""Regular expressions from users, run by RE2: time linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``(a+)+$`` against 36 ``a`` and one other character takes hours,
and it holds the GIL all along, so nothing else in the process runs meanwhile (not the
lease keeper, not Celery's time limit). RE2 (the ``google-re2`` package) never backtracks;
in exchange, it refuses what needs backtracking, and its syntax differs from Python's:

- no backreferences (``\\1``), lookaround (``(?=``, ``(?<!``) or possessive quantifiers;
- ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII: ``\\p{L}`` and ``\\p{N}`` match letters
  and digits of any script;
- ``$`` is the end of the text (``(?m)$`` the end of a line); ``\\z``, not ``\\Z``;
- counted repetitions go up to ``{1000}``, and a compiled pattern has a memory budget.
"""

from __future__ import annotations

from typing import Protocol

import re2

from core.errors import PermanentError

#: RE2's budget for one compiled pattern (its default): a pattern that needs more is refused.
MAX_PATTERN_MEMORY = 8 << 20


class UnusablePattern(PermanentError):
    """The regular expression cannot be run by RE2 (syntax it lacks, or too large)."""


class PatternMatch(Protocol):
    """What a search found."""

    def group(self, index: int = 0) -> str: ...


class CompiledPattern(Protocol):
    """A compiled pattern: ``search`` is linear in the length of the text."""

    def search(self, text: str) -> PatternMatch | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_PATTERN_MEMORY
    # RE2 would also print each refused pattern to stderr: the caller reports it instead.
    options.log_errors = False
    return options


_OPTIONS = _options()


def compile_pattern(pattern: str) -> CompiledPattern:
    """``pattern`` compiled by RE2 (recent compilations are cached by the module).

    Raises :class:`UnusablePattern` with RE2's reason.
    """
    try:
        compiled: CompiledPattern = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise UnusablePattern(f"RE2 cannot use this pattern: {_reason(exc)}") from None
    return compiled


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else "unknown error"
    if isinstance(reason, bytes):
        return reason.decode("utf-8", errors="replace")
    return str(reason)
