"""The closed exception tree of AutoForge Jobs.

Every error the system raises on purpose descends from :class:`AutoforgeError` and is
either :class:`TransientError` (worth retrying with backoff: the same call may succeed
later) or :class:`PermanentError` (retrying cannot help: fail now and record why).
Retry policies match on these two types and nothing else.

As in procrastinate, a subclass's docstring is its default message, so most
subclasses are one docstring long.
"""

from __future__ import annotations


class AutoforgeError(Exception):
    """An AutoForge Jobs error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class TransientError(AutoforgeError):
    """A temporary failure; the same operation may succeed if retried later."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the peer asked us to wait (e.g. an HTTP ``Retry-After``), if any.
        self.retry_after = retry_after


class PermanentError(AutoforgeError):
    """A failure that retrying cannot fix."""


class ConfigurationError(PermanentError):
    """The configuration is invalid."""


class InvalidData(PermanentError):
    """Data does not have the required shape."""


class NotFound(PermanentError):
    """The requested item does not exist."""
