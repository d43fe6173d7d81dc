"""A small client of the API for the CLI: requests, and errors explained in one line.

The key goes in the ``Authorization`` header and nowhere else: it is never printed, not
even in an error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from cli.errors import CommandFailed
from core.errors import ConfigurationError
from core.local_secrets import client_api_key
from core.settings import Settings

if TYPE_CHECKING:
    import httpx

TIMEOUT_S = 10.0


class ApiClient:
    """The API at ``base_url``, called with ``key``."""

    def __init__(self, base_url: str, key: str) -> None:
        import httpx  # only the commands that call the API pay for it

        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            timeout=TIMEOUT_S,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        """``API_URL`` with ``AUTOFORGE_API_KEY`` (or, in ``local``, the generated key)."""
        key = client_api_key(settings)
        if key is None:
            raise ConfigurationError(
                "no API key: set AUTOFORGE_API_KEY or pass --key (or run 'autoforge up' once "
                "to generate one)"
            )
        if not key.isascii() or not key.isprintable():
            raise ConfigurationError(
                "AUTOFORGE_API_KEY: not a usable API key (only printable ASCII characters)"
            )
        return cls(settings.api_url, key)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The API's answer, whatever its status; :class:`CommandFailed` if it cannot be
        reached."""
        import httpx

        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CommandFailed(
                f"the API at {self.base_url} did not answer within {TIMEOUT_S:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise CommandFailed(
                f"cannot reach the API at {self.base_url} ({str(exc) or type(exc).__name__}); "
                "is it running?"
            ) from None


def answer(response: httpx.Response, as_json: bool) -> Any:
    """The response's JSON; an error status fails the command with the API's message (and,
    with ``--json``, the API's error body on stdout)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and data is not None:
        return data
    if as_json and data is not None:
        print_json(data)
    raise api_error(response, data)


def api_error(response: httpx.Response, data: Any) -> CommandFailed:
    """The failure of a command whose request the API refused, with the API's message."""
    return CommandFailed(f"HTTP {response.status_code}: {_error_message(response, data)}")


def _error_message(response: httpx.Response, data: Any) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if data.get("detail"):
            return json.dumps(data["detail"])
    text = " ".join(response.text.split())
    return text[:200] if text else response.reason_phrase


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2))
