"""Logging set-up: one scrubbing handler, at the more verbose of two asked levels."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.logging import configure_logging
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("log_level", "asked", "effective"),
    [
        ("INFO", None, logging.INFO),
        ("INFO", logging.DEBUG, logging.DEBUG),  # celery worker --loglevel DEBUG
        ("INFO", "debug", logging.DEBUG),
        ("DEBUG", logging.WARNING, logging.DEBUG),  # Celery's default, below LOG_LEVEL
        ("WARNING", "INFO", logging.INFO),
        ("ERROR", "not-a-level", logging.ERROR),
    ],
)
def test_the_more_verbose_level_wins(
    tmp_path: Path, log_level: str, asked: int | str | None, effective: int
) -> None:
    settings = make_settings(tmp_path / "db", log_level=log_level)

    configure_logging(settings, level=asked)

    root = logging.getLogger()
    assert root.level == effective
    assert [h for h in root.handlers if getattr(h, "autoforge", False)] != []


def test_configuring_again_keeps_one_handler(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "db")

    configure_logging(settings)
    configure_logging(settings, level=logging.DEBUG)

    assert len([h for h in logging.getLogger().handlers if getattr(h, "autoforge", False)]) == 1
