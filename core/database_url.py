"""Parse the database URL forms we accept into a :class:`DatabaseTarget`.

Accepted forms (anything else is an error naming the variable and these forms):

* a file path: ``./data/autoforge.db``, ``/var/lib/autoforge.db``
* ``file:`` URLs: ``file:data/autoforge.db``, ``file:///var/lib/autoforge.db``
* ``sqlite+libsql://``: ``sqlite+libsql:///data/x.db`` (a file) or
  ``sqlite+libsql://host:port/?secure=true`` (a server)
* ``libsql://host`` and ``https://host`` (a remote libSQL server / Turso)
* ``http://host`` only when the host is a loopback address (an sqld on this machine)

A token may ride along in the query string (``?authToken=...``): it is taken out of the
URL and kept as a secret, so the URL we keep can be printed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

ACCEPTED_FORMS = (
    "a file path, file:, sqlite+libsql://, libsql://, https://, or http:// (loopback hosts only)"
)
_TOKEN_PARAMS = ("authToken", "auth_token", "authtoken")


class DatabaseURLError(ValueError):
    """A database URL that is not one of the accepted forms.

    The message never contains the URL's password or token.
    """


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the database lives: a local libSQL file or a remote libSQL server.

    ``url`` never carries credentials; the token is a :class:`SecretStr`, so ``repr``
    and ``str`` of this object are safe to log.
    """

    kind: Literal["local", "remote"]
    path: Path | None = None
    url: str | None = None
    auth_token: SecretStr | None = field(default=None, repr=False)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def describe(self) -> str:
        """A human description that is safe to print."""
        if self.kind == "local":
            return f"libSQL file {self.path}"
        return f"remote libSQL at {self.url}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redacted(raw: str) -> str:
    """The URL with any password and token removed, for error messages."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = (
            f"{parts.username}:***@{netloc}" if parts.password else f"{parts.username}@{netloc}"
        )
    query = [(k, "***" if k in _TOKEN_PARAMS else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def parse_database_url(
    raw: str,
    *,
    variable: str,
    base_dir: Path,
    plaintext_hosts: frozenset[str] = frozenset(),
) -> DatabaseTarget:
    """Turn ``raw`` (the value of environment variable ``variable``) into a target.

    Relative file paths are resolved against ``base_dir``. ``http://`` is accepted for
    loopback hosts and for the host names listed in ``plaintext_hosts`` (an explicit
    opt-in, e.g. ``sqld`` on a private container network).
    """
    value = raw.strip()
    if not value:
        raise DatabaseURLError(f"{variable} is empty; expected {ACCEPTED_FORMS}")
    if "://" not in value and not value.startswith("file:"):
        return _local(value, base_dir)

    scheme = value.split(":", 1)[0].lower()
    if scheme == "file":
        rest = value[len("file:") :]
        if rest.startswith("//"):
            rest = urlsplit(value).path
        return _local(rest.split("?", 1)[0], base_dir, variable=variable)

    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query))
    token = next((query.pop(k) for k in _TOKEN_PARAMS if k in query), None)
    secret = SecretStr(token) if token else None
    if parts.password:
        # A password in the URL is a token in disguise: keep it secret, drop it from the URL.
        secret = SecretStr(parts.password)

    if scheme == "sqlite+libsql":
        if not parts.hostname:
            return _local(parts.path.removeprefix("/"), base_dir, variable=variable)
        secure = query.pop("secure", "false").lower() in ("1", "true", "yes")
        scheme = "https" if secure else "http"
    elif scheme not in ("libsql", "https", "http"):
        raise DatabaseURLError(
            f"{variable} has an unsupported scheme {scheme!r} ({_redacted(value)}); "
            f"expected {ACCEPTED_FORMS}"
        )

    host = parts.hostname
    if not host:
        raise DatabaseURLError(
            f"{variable} has no host ({_redacted(value)}); expected {ACCEPTED_FORMS}"
        )
    if scheme == "http" and not (_is_loopback(host) or host in plaintext_hosts):
        raise DatabaseURLError(
            f"{variable} uses plain http:// to a non-loopback host {host!r}; use https:// or "
            "libsql:// (tokens must not cross the network unencrypted), or list the host in "
            "DATABASE_PLAINTEXT_HOSTS if it is on a private network"
        )
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    url = urlunsplit((scheme, netloc, parts.path.rstrip("/"), urlencode(query), ""))
    return DatabaseTarget(kind="remote", url=url, auth_token=secret)


def _local(raw_path: str, base_dir: Path, *, variable: str = "DATABASE_URL") -> DatabaseTarget:
    if not raw_path or raw_path == ":memory:":
        raise DatabaseURLError(
            f"{variable} must name a database file ({raw_path or 'empty path'} given): workers "
            "in other processes must see the same database"
        )
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return DatabaseTarget(kind="local", path=path.resolve())
