"""Process-wide logging set-up, with secrets scrubbed from every line.

Tokens are kept out of messages by construction (``SecretStr``, URLs without
credentials); the redacting formatters are the safety net for what a third-party
library might print, e.g. an exception text that quotes a URL.

``LOG_FORMAT=text`` (the default) writes one readable line per record; ``LOG_FORMAT=json``
writes one JSON object per line with ``time``, ``level``, ``logger`` and ``message``, and,
on every line written while a job runs (inside :func:`job_log_context`), the job's
``job_id``, ``kind`` and ``attempt``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from core.settings import Settings

REDACTED = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that set up handlers of their own instead of using the root logger's.
_OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@dataclass(frozen=True, slots=True)
class JobLogFields:
    """What every log line of a running job says about it."""

    job_id: str
    kind: str
    attempt: int


# A context variable, not a global: each thread (and asyncio task) sees its own job, and
# a thread a job starts sees it only when started in a copy of the job's context.
_current_job: ContextVar[JobLogFields | None] = ContextVar("autoforge_job_log", default=None)


@contextmanager
def job_log_context(job_id: str, kind: str, attempt: int) -> Iterator[JobLogFields]:
    """Tag every log line written inside the block with the job's id, kind and attempt."""
    fields = JobLogFields(job_id=job_id, kind=str(kind), attempt=attempt)
    token = _current_job.set(fields)
    try:
        yield fields
    finally:
        _current_job.reset(token)


def current_job_fields() -> JobLogFields | None:
    """The job whose code is running in this context, if any."""
    return _current_job.get()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that replaces every known secret value with ``***``."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets scrubbed from every string in it.

    Scrubbing happens before serialisation: a secret with a quote or a backslash in it
    would no longer match once JSON has escaped it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
        }
        job = _current_job.get()
        if job is not None:
            entry.update(asdict(job))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), self._secrets)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info), self._secrets)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _CurrentStderr:
    """``sys.stderr`` as it is at each write, not as it was when logging was set up.

    A live progress display (the CLI's) redirects ``sys.stderr`` to print log lines above
    its bars instead of through them.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _formatter(settings: Settings) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(settings.secrets())
    return RedactingFormatter(TEXT_FORMAT, settings.secrets())


def configure_logging(settings: Settings, *, level: int | str | None = None) -> None:
    """Send logs to stderr at ``LOG_LEVEL`` in ``LOG_FORMAT``, scrubbed of the secrets.

    ``level`` (e.g. Celery's ``--loglevel``) applies where it is more verbose than
    ``LOG_LEVEL``: either one asking for more detail gets it.
    """
    handler: logging.StreamHandler[_CurrentStderr] = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(_formatter(settings))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "autoforge", False):
            root.removeHandler(existing)
    handler.autoforge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    threshold = logging.getLevelName(settings.log_level)
    if level is not None:
        asked = level if isinstance(level, int) else logging.getLevelName(level.upper())
        if isinstance(asked, int):
            threshold = min(threshold, asked)
    root.setLevel(threshold)
    if settings.log_format == "json":
        # uvicorn gives its loggers their own text handlers; in JSON every line is ours.
        for name in _OWN_HANDLER_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    # Alembic announces every plugin it loads at INFO: noise on each CLI command.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if settings.db_echo:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
