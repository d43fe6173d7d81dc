"""The settings as a person may see them: each under its environment variable, secrets hidden.

What is hidden, and how much:

- a secret (a ``SecretStr`` setting: tokens, keys, ``user:password`` pairs) is ``***``,
  except a secret URL (``REDIS_URL``), which keeps everything but its credentials;
- any URL shows its host and path but not its credentials: the password of
  ``user:password@`` (a lone ``user@`` may itself be a token: hidden too) and the values
  of query parameters named like credentials (``?authToken=``, ``?api_key=``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from core.settings import Settings

REDACTED = "***"
# Query parameters whose values are credentials (matched case-insensitively, as parts).
_SECRET_PARAMETER_PARTS = ("token", "key", "secret", "password", "passwd", "signature", "auth")


@dataclass(frozen=True, slots=True)
class SettingView:
    """One setting, safe to print."""

    #: The environment variable that sets it.
    variable: str
    #: Its value with secrets hidden (JSON-compatible; None when unset).
    value: Any
    #: ``default`` when nothing set it, ``set`` when the environment, ``.env`` or a
    #: command-line option did.
    source: Literal["default", "set"]


def redact_url(url: str) -> str:
    """``url`` without its credentials; a string that is not a URL comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparsable: cannot tell which part is secret
    if not parts.scheme or not parts.netloc:
        return url
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret_parameter(name) for name, _ in pairs):
            query = urlencode(
                [(name, REDACTED if _is_secret_parameter(name) else v) for name, v in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_PARAMETER_PARTS)


def _looks_like_url(value: str) -> bool:
    return "://" in value


def _shown(value: Any) -> Any:
    """A setting's value, JSON-compatible, with its secrets hidden."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return redact_url(secret) if _looks_like_url(secret) else REDACTED
    if isinstance(value, str):
        return redact_url(value) if _looks_like_url(value) else value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(item) for item in value]
    if isinstance(value, BaseModel):  # a replica: its token is a SecretStr, shown as ***
        return {name: _shown(getattr(value, name)) for name in type(value).model_fields}
    return value


def environment_variable(name: str) -> str:
    """The environment variable of the settings field ``name``."""
    alias = Settings.model_fields[name].validation_alias
    return alias.upper() if isinstance(alias, str) else name.upper()


def settings_view(
    settings: Settings, *, in_force: Mapping[str, Any] | None = None
) -> list[SettingView]:
    """Every setting, in declaration order, safe to print.

    ``in_force`` replaces the values of some fields by what is in force, e.g. the per-kind
    limits with the defaults of the declared kinds filled in (settings know only overrides).
    """
    values = in_force or {}
    return [
        SettingView(
            variable=environment_variable(name),
            value=_shown(values[name] if name in values else getattr(settings, name)),
            source="set" if name in settings.model_fields_set else "default",
        )
        for name in Settings.model_fields
    ]
