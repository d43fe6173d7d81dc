"""The Celery entry point: ``celery -A workers.main worker|beat|flower``.

This module is the process's ``main``: it builds the settings once (from the
environment) and the app from them. Nothing else creates settings at import, and no
connection is made until a worker process starts.
"""

from __future__ import annotations

from core.logging import configure_logging
from core.settings import load_settings
from workers.app import create_celery

settings = load_settings()
configure_logging(settings)
app = create_celery(settings)
