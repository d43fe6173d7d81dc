"""Process-wide logging set-up, with secrets scrubbed from every line.

Tokens are kept out of messages by construction (``SecretStr``, URLs without
credentials); the redacting formatter is the safety net for what a third-party
library might print, e.g. an exception text that quotes a URL.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from core.settings import Settings

REDACTED = "***"


class RedactingFormatter(logging.Formatter):
    """A formatter that replaces every known secret value with ``***``."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def configure_logging(settings: Settings, *, level: int | str | None = None) -> None:
    """Send logs to stderr at ``LOG_LEVEL``, scrubbed of the configured secrets.

    ``level`` (e.g. Celery's ``--loglevel``) applies where it is more verbose than
    ``LOG_LEVEL``: either one asking for more detail gets it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", settings.secrets())
    )
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
    # Alembic announces every plugin it loads at INFO: noise on each CLI command.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if settings.db_echo:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
