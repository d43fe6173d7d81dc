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


def configure_logging(settings: Settings) -> None:
    """Send logs to stderr at ``LOG_LEVEL``, scrubbed of the configured secrets."""
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
    root.setLevel(settings.log_level)
    # Alembic announces every plugin it loads at INFO: noise on each CLI command.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if settings.db_echo:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
