"""``autoforge``: start the system, migrate and inspect the database.

Settings are built once per invocation and passed down; errors are printed as one clear
line (never a traceback with secrets in it) and exit non-zero.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

import typer

from core.errors import AutoforgeError, ConfigurationError
from core.logging import configure_logging
from core.settings import Settings, load_settings

app = typer.Typer(
    name="autoforge",
    help="AutoForge Jobs: background jobs for the prompt-engineering platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database: migrations and query plans.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings)
    return settings


def _run(action: Callable[[], T]) -> T:
    """Run a command body, turning our errors into a clear message and an exit code."""
    try:
        return action()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except AutoforgeError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def up() -> None:
    """Start the system on the configured (by default embedded) components.

    For now this migrates the database to the newest revision and reports where it is.
    """
    from db import migrations

    def body() -> None:
        settings = _settings()
        migrations.upgrade(settings)
        typer.echo(f"database: {settings.database.describe()}")
        typer.echo(f"schema revision: {migrations.current_revision(settings)} (head)")

    _run(body)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    from db import migrations

    def body() -> None:
        settings = _settings()
        migrations.upgrade(settings, revision)
        typer.echo(f"{settings.database.describe()} at {migrations.current_revision(settings)}")

    _run(body)


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1, 0002, base")]) -> None:
    """Migrate the database down to REVISION."""
    from db import migrations

    def body() -> None:
        settings = _settings()
        migrations.downgrade(settings, revision)
        typer.echo(f"{settings.database.describe()} at {migrations.current_revision(settings)}")

    _run(body)


@db_app.command("current")
def db_current(as_json: JsonFlag = False) -> None:
    """Show the database's schema revision and the newest one available."""
    from db import migrations

    def body() -> None:
        settings = _settings()
        data = {
            "database": settings.database.describe(),
            "current": migrations.current_revision(settings),
            "head": migrations.head_revision(settings),
        }
        if as_json:
            _print_json(data)
        else:
            for key, value in data.items():
                typer.echo(f"{key}: {value}")

    _run(body)


@db_app.command("explain")
def db_explain(
    sql: Annotated[str, typer.Argument(help="One SQL statement, with literal values.")],
    as_json: JsonFlag = False,
) -> None:
    """Print the EXPLAIN QUERY PLAN of SQL (the statement is not run)."""
    from db.database import Database
    from db.explain import explain, render_plan

    def body() -> None:
        db = Database(_settings())
        try:
            steps = explain(db, sql)
        finally:
            db.dispose()
        if as_json:
            _print_json([asdict(step) for step in steps])
        else:
            typer.echo(render_plan(steps))

    _run(body)


@config_app.command("show")
def config_show(as_json: JsonFlag = False) -> None:
    """Print the effective settings; secrets are shown as '***'."""

    def body() -> None:
        settings = _settings()
        data: dict[str, Any] = {"database": settings.database.describe()}
        for name, value in settings.model_dump().items():
            if name in {"database_url", "turso_database_url", "turso_staging_database_url"}:
                continue  # may embed credentials; "database" above is the safe view
            if "token" in name or "password" in name or "secret" in name:
                value = None if value is None else "***"
            data[name] = value
        if as_json:
            _print_json(data)
        else:
            for key, value in data.items():
                typer.echo(f"{key}: {value}")

    _run(body)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="autoforge")


if __name__ == "__main__":
    main()
    sys.exit(0)
