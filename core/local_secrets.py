"""Secrets generated for a ``local`` run when none are configured.

In ``local``, ``autoforge up`` creates an API key and a Flower password on first start,
keeps them under the data folder (mode 0600) and prints them once. Other processes of the
same checkout (the API, the CLI) read them from there. Outside ``local`` nothing is
generated: the settings must provide them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.errors import ConfigurationError
from core.settings import Settings

API_KEY_FILE = "api-key"
FLOWER_AUTH_FILE = "flower-auth"


def _path(settings: Settings, name: str) -> Path:
    return (Path.cwd() / settings.data_dir / name).resolve()


def read_local_secret(settings: Settings, name: str) -> str | None:
    """The stored secret ``name``, or None if there is none (or not in ``local``)."""
    if settings.app_env != "local":
        return None
    path = _path(settings, name)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def ensure_local_secret(settings: Settings, name: str, generate: str) -> tuple[str, bool]:
    """The stored secret ``name``, creating it from ``generate`` if missing.

    Returns ``(value, created)``: ``created`` tells the caller to print it (once).
    """
    if settings.app_env != "local":
        raise ConfigurationError(f"{name} must be configured when APP_ENV={settings.app_env}")
    existing = read_local_secret(settings, name)
    if existing is not None:
        return existing, False
    path = _path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once cannot both create (and print) a secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = read_local_secret(settings, name)
        if stored is None:
            raise ConfigurationError(f"{path} exists but is empty; delete it") from None
        return stored, False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(generate + "\n")
    return generate, True


def new_api_key() -> str:
    return "afk_" + secrets.token_urlsafe(32)


def new_flower_auth() -> str:
    return "admin:" + secrets.token_urlsafe(18)


def api_keys(settings: Settings) -> list[str]:
    """Keys the API accepts: ``AUTOFORGE_API_KEYS``, else (local) the generated one."""
    keys = settings.api_keys()
    if keys:
        return keys
    stored = read_local_secret(settings, API_KEY_FILE)
    return [stored] if stored else []


def client_api_key(settings: Settings) -> str | None:
    """The key the CLI sends: ``AUTOFORGE_API_KEY``, else the first configured or stored."""
    if settings.autoforge_api_key is not None and settings.autoforge_api_key.get_secret_value():
        return settings.autoforge_api_key.get_secret_value()
    keys = api_keys(settings)
    return keys[0] if keys else None


def flower_basic_auth(settings: Settings) -> str | None:
    if settings.flower_basic_auth is not None and settings.flower_basic_auth.get_secret_value():
        return settings.flower_basic_auth.get_secret_value()
    return read_local_secret(settings, FLOWER_AUTH_FILE)
