"""``autoforge config show``: the effective settings, under their environment variables."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.options import command_settings
from core.settings_view import settings_view
from tasks.registry import kind_registry

config_app = typer.Typer(help="Configuration.", no_args_is_help=True)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print every setting with its environment variable and where its value comes from.

    Secrets are shown as '***'; URLs keep their host but not their credentials (a Redis
    URL shows everything but its password).
    """
    settings = command_settings()
    kinds = kind_registry()
    kinds.check_settings(settings)
    view = settings_view(settings, in_force=kinds.effective(settings))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "database": settings.database.describe(),
                    "settings": {
                        line.variable: {"value": line.value, "source": line.source} for line in view
                    },
                },
                indent=2,
            )
        )
        return
    rows = [("VARIABLE", "VALUE", "SOURCE")] + [
        (line.variable, _text(line.value), line.source) for line in view
    ]
    name_width = max(len(row[0]) for row in rows)
    value_width = min(max(len(row[1]) for row in rows), 60)
    for name, value, source in rows:
        typer.echo(f"{name:<{name_width}}  {value:<{value_width}}  {source}")
    typer.echo(f"\ndatabase in use: {settings.database.describe()}")
