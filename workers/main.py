"""The Celery entry point: ``celery -A workers.main worker|beat|flower``.

This module is the process's ``main``: it builds the settings once (from the
environment), sets up logging (and keeps Celery from replacing it), and builds the app
from the settings. Nothing else creates settings at import, and no connection is made
until a worker process starts.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from core.logging import configure_logging
from core.settings import load_settings
from workers.app import create_celery

settings = load_settings()
configure_logging(settings)
app = create_celery(settings)


@signals.setup_logging.connect(weak=False)
def _keep_scrubbed_logging(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """``celery worker`` and ``beat`` set up logging at start: with a receiver of this
    signal they leave it to us, instead of replacing our handler (which scrubs secrets)
    with theirs."""
    configure_logging(settings, level=loglevel or None)
