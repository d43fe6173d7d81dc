"""The process entry point: ``uvicorn --factory api.main:build``."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from core.logging import configure_logging
from core.settings import load_settings


def build() -> FastAPI:
    """Load the settings once, set up logging, and build the app."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
