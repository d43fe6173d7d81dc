"""The global options (``autoforge --api-url URL --key KEY <command>``) and the settings they
override.

Each command builds its settings once, with :func:`command_settings`: the environment and
``.env`` as everywhere else, then the global options on top.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from core.logging import configure_logging
from core.settings import Settings, load_settings


@dataclass(frozen=True)
class GlobalOptions:
    """What the options before the command override; ``None``: not given."""

    api_url: str | None = None
    key: str | None = field(default=None, repr=False)

    def overrides(self) -> dict[str, Any]:
        """Settings fields and their values from these options."""
        values: dict[str, Any] = {}
        if self.api_url is not None:
            values["api_url"] = self.api_url
        if self.key is not None:
            values["autoforge_api_key"] = self.key
        return values


_options: ContextVar[GlobalOptions | None] = ContextVar("autoforge_cli_options", default=None)


def use_global_options(options: GlobalOptions) -> None:
    """Remember the global options for the command about to run."""
    _options.set(options)


def global_options() -> GlobalOptions:
    """The global options of the command being run (none given: all ``None``)."""
    return _options.get() or GlobalOptions()


def command_settings(**overrides: Any) -> Settings:
    """This command's settings (environment, ``.env``, global options, then ``overrides``),
    with logging configured from them."""
    settings = load_settings(**{**global_options().overrides(), **overrides})
    configure_logging(settings)
    if settings.log_level != "DEBUG":
        # httpx announces every request at INFO: noise on each command (and each poll).
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return settings
