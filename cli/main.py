"""``autoforge``: start the system, enqueue and follow jobs, migrate and back up the database.

Settings are built once per command (:func:`cli.options.command_settings`) and passed
down. Every failure is one ``error: ...`` line on stderr (never a traceback with secrets in
it) and an exit code from :class:`cli.errors.ExitCode`: 1 the command failed, 2 bad usage,
input or configuration; ``jobs wait`` and ``enqueue --wait`` add 3 (the job failed),
4 (cancelled) and 5 (still running at ``--timeout``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer

from cli import inputs
from cli.backup import backup_app
from cli.config import config_app
from cli.errors import run_app
from cli.jobs import enqueue, jobs_app
from cli.options import GlobalOptions, command_settings, use_global_options
from cli.replica import replica_app
from cli.search import embed, search

DISTRIBUTION = "autoforge-jobs"

app = typer.Typer(
    name="autoforge",
    help="AutoForge Jobs: background jobs for the prompt-engineering platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database: migrations and query plans.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")
app.add_typer(backup_app, name="backup")
app.add_typer(replica_app, name="replica")
app.command("enqueue")(enqueue)
app.command("embed")(embed)
app.command("search")(search)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _version(value: bool) -> None:
    if not value:
        return
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        installed = "unknown (not installed)"
    typer.echo(f"autoforge {installed}")
    raise typer.Exit()


@app.callback()
def global_options(
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            metavar="URL",
            callback=inputs.api_url,
            help="The API the job commands talk to (overrides API_URL).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            callback=inputs.api_key,
            help="The API key to send (overrides AUTOFORGE_API_KEY; other users can see a "
            "command line: prefer the variable on shared machines). Never printed.",
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """AutoForge Jobs: background jobs for the prompt-engineering platform."""
    use_global_options(GlobalOptions(api_url=api_url, key=key))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def up(
    api_port: Annotated[
        int | None, typer.Option(help="API port (env API_PORT; default 8000).")
    ] = None,
    flower_port: Annotated[
        int | None, typer.Option(help="Flower port (env FLOWER_PORT; default 5555).")
    ] = None,
    redis_port: Annotated[
        int | None,
        typer.Option(help="Embedded Redis port (env EMBEDDED_REDIS_PORT; default 6399)."),
    ] = None,
    bind: Annotated[
        str | None,
        typer.Option(
            help="Address the API and Flower listen on (env BIND_HOST; default 127.0.0.1)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", help="Worker processes (env WORKER_CONCURRENCY; default 2)."
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues for the worker (default: all)."),
    ] = None,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not start the API.")] = False,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not start a worker.")] = False,
    no_beat: Annotated[bool, typer.Option("--no-beat", help="Do not start beat.")] = False,
    no_flower: Annotated[bool, typer.Option("--no-flower", help="Do not start Flower.")] = False,
    stop_timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds to wait for a graceful stop before forcing it."),
    ] = 30.0,
    max_restarts: Annotated[
        int,
        typer.Option(min=0, help="Restarts of a crashing process (per window) before giving up."),
    ] = 5,
    restart_window: Annotated[
        float, typer.Option(min=1, help="The window (seconds) for --max-restarts.")
    ] = 60.0,
) -> None:
    """Start the whole system and supervise it until Ctrl-C.

    Starts Redis (embedded unless REDIS_URL is set), migrates the database, then runs the
    API, a worker on all queues, beat and Flower as child processes, restarting any that
    crashes. Their output is shown here, each line prefixed with the process's name.

    Ctrl-C or SIGTERM stops everything gracefully: running tasks finish first (up to
    --stop-timeout seconds); a second Ctrl-C stops at once.
    """
    from devstack.supervisor import UpOptions, run_up

    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "api_port": api_port,
            "flower_port": flower_port,
            "embedded_redis_port": redis_port,
            "bind_host": bind,
            "worker_concurrency": concurrency,
        }.items()
        if value is not None
    }
    options = UpOptions(
        api=not no_api,
        worker=not no_worker,
        beat=not no_beat,
        flower=not no_flower,
        queues=tuple(q.strip() for q in (queues or "").split(",") if q.strip()),
        stop_timeout_s=stop_timeout,
        max_restarts=max_restarts,
        restart_window_s=restart_window,
    )

    code = run_up(command_settings(**overrides), options)
    if code:
        raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    from db import migrations

    settings = command_settings()
    migrations.upgrade(settings, revision)
    typer.echo(f"{settings.database.describe()} at {migrations.current_revision(settings)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1, 0002, base")]) -> None:
    """Migrate the database down to REVISION."""
    from db import migrations

    settings = command_settings()
    migrations.downgrade(settings, revision)
    typer.echo(f"{settings.database.describe()} at {migrations.current_revision(settings)}")


@db_app.command("current")
def db_current(as_json: JsonFlag = False) -> None:
    """Show the database's schema revision and the newest one available."""
    from db import migrations

    settings = command_settings()
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


@db_app.command("explain")
def db_explain(
    sql: Annotated[str, typer.Argument(help="One SQL statement, with literal values.")],
    as_json: JsonFlag = False,
) -> None:
    """Print the EXPLAIN QUERY PLAN of SQL (the statement is not run)."""
    from db.database import Database
    from db.explain import explain, render_plan

    db = Database(command_settings())
    try:
        steps = explain(db, sql)
    finally:
        db.dispose()
    if as_json:
        _print_json([asdict(step) for step in steps])
    else:
        typer.echo(render_plan(steps))


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_app(app))


if __name__ == "__main__":
    main()
