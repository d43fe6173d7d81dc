"""``autoforge enqueue`` and ``autoforge jobs ...``: the job commands, over the HTTP API.

They talk to the API at ``API_URL`` (or ``--api-url``) with the key from
``AUTOFORGE_API_KEY`` (or ``--key``; in ``local``, the generated one), never to the
database or Redis directly: the API is the one place where jobs are accepted. Every
command prints a compact human form, or with ``--json`` the API's JSON. The key is never
printed.

``jobs wait`` and ``enqueue --wait`` exit with the job's end state: 0 succeeded, 3 failed,
4 cancelled, 5 still running when ``--timeout`` passed (see :class:`cli.errors.ExitCode`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from cli import inputs
from cli.api_client import ApiClient, answer, api_error, print_json
from cli.errors import CommandFailed, ExitCode
from cli.options import command_settings
from domain.jobs import JobStatus

if TYPE_CHECKING:
    from rich.progress import Progress

#: How a finished job ends the command.
END_STATES: dict[str, ExitCode] = {
    JobStatus.SUCCEEDED: ExitCode.OK,
    JobStatus.FAILED: ExitCode.JOB_FAILED,
    JobStatus.CANCELLED: ExitCode.JOB_CANCELLED,
}
FIRST_POLL_S = 0.2
MAX_POLL_S = 2.0

jobs_app = typer.Typer(
    help="Jobs in the ledger: list, show, wait for, cancel, retry (through the API).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
JobId = Annotated[str, typer.Argument(metavar="ID", callback=inputs.text)]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="SECONDS",
        help="Give up after this long (exit 5); default: wait as long as the job runs.",
    ),
]


def _with_api(command: Callable[[ApiClient], None]) -> None:
    with ApiClient.from_settings(command_settings()) as api:
        command(api)


def _when(value: Any) -> str:
    return str(value) if value else "-"


def _print_job(job: dict[str, Any]) -> None:
    error = job.get("error")
    lines = {
        "id": job["id"],
        "kind": job["kind"],
        "status": job["status"],
        "attempts": f"{job['attempts']}/{job['max_attempts']}",
        "progress": f"{float(job['progress']):.0%}",
        "arguments": json.dumps(job["arguments"], sort_keys=True),
        "result": json.dumps(job["result"], sort_keys=True) if job["result"] is not None else "-",
        "error": f"{error['kind']}: {error['message']}" if error else "-",
        "idempotency_key": job.get("idempotency_key") or "-",
        "created_at": _when(job.get("created_at")),
        "started_at": _when(job.get("started_at")),
        "finished_at": _when(job.get("finished_at")),
    }
    width = max(len(name) for name in lines)
    for name, value in lines.items():
        typer.echo(f"{name + ':':<{width + 1}} {value}")


def _print_table(jobs: list[dict[str, Any]]) -> None:
    header = ("ID", "KIND", "STATUS", "ATTEMPTS", "CREATED")
    rows = [
        (
            job["id"],
            job["kind"],
            job["status"],
            f"{job['attempts']}/{job['max_attempts']}",
            _when(job.get("created_at")),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _job_path(job_id: str, action: str = "") -> str:
    path = f"/v1/jobs/{quote(job_id, safe='')}"
    return f"{path}/{action}" if action else path


class _WaitDisplay:
    """The job's status and progress as a live bar on stderr, only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Progress | None = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
        self._task: Any = None

    def __enter__(self) -> _WaitDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def show(self, job: dict[str, Any]) -> None:
        if self._progress is None:
            return
        description = f"job {job['id']} {job['kind']} {job['status']}"
        detail = job.get("progress_detail")
        if detail:
            description += f" {detail['done']}/{detail['total']} {detail['unit']}"
        completed = round(float(job.get("progress") or 0) * 100)
        if self._task is None:
            self._task = self._progress.add_task(description, total=100, completed=completed)
        else:
            self._progress.update(self._task, description=description, completed=completed)


def wait_for_job(
    api: ApiClient, job_id: str, *, timeout: float | None, as_json: bool
) -> dict[str, Any]:
    """Poll the job until it is final; :class:`CommandFailed` (exit 5) at ``timeout``.

    A ``503`` (the database is busy or away for a moment) is waited out like a job that is
    still running; any other error ends the wait.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = FIRST_POLL_S
    last: dict[str, Any] | None = None
    with _WaitDisplay(enabled=not as_json and sys.stderr.isatty()) as display:
        while True:
            response = api.call("GET", _job_path(job_id))
            if response.status_code != 503:
                last = answer(response, as_json)
                assert last is not None
                display.show(last)
                if last["status"] in END_STATES:
                    return last
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if last is None:
                    raise api_error(response, None)
                if as_json:
                    print_json(last)
                raise CommandFailed(
                    f"job {job_id} is still {last['status']} after {timeout:g} s",
                    ExitCode.WAIT_TIMED_OUT,
                )
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, MAX_POLL_S)


def _finish(job: dict[str, Any], as_json: bool) -> None:
    """Print the finished job; exit with its end state."""
    if as_json:
        print_json(job)
    else:
        _print_job(job)
    code = END_STATES[job["status"]]
    if code != ExitCode.OK:
        raise typer.Exit(code)


def enqueue(
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="A job kind the API accepts (POST /v1/jobs/KIND); another is refused with "
            "the list of kinds.",
            callback=inputs.text,
        ),
    ],
    body: Annotated[
        dict[str, Any] | None,
        typer.Option(
            "--body",
            metavar="JSON|@FILE",
            parser=inputs.json_body,
            help="The job's JSON body, or @file.json (UTF-8); default: {}.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            callback=inputs.idempotency_key,
            help="Replaying the key returns the same job (printable ASCII, at most 255).",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the job to end; exit 0 succeeded, 3 failed, 4 cancelled, 5 timeout.",
        ),
    ] = False,
    timeout: Timeout = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a job of KIND through the API (and with --wait, wait for its end)."""
    if timeout is not None and not wait:
        raise typer.BadParameter("only means something with --wait", param_hint="'--timeout'")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}

    def command(api: ApiClient) -> None:
        response = api.call(
            "POST", f"/v1/jobs/{quote(kind, safe='')}", json=body or {}, headers=headers
        )
        job = answer(response, as_json)
        if not as_json:
            if response.status_code == 200:
                typer.echo(
                    f"job {job['id']} already exists for this key ({job['kind']}, {job['status']})"
                )
            else:
                typer.echo(f"job {job['id']} accepted ({job['kind']}, {job['status']})")
        if not wait:
            if as_json:
                print_json(job)
            return
        _finish(wait_for_job(api, job["id"], timeout=timeout, as_json=as_json), as_json)

    _with_api(command)


@jobs_app.command("list")
def list_jobs(
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only jobs of this kind.", callback=inputs.text)
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="queued, running, succeeded, failed, cancelled",
            callback=inputs.text,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="Continue after a previous page.", callback=inputs.text),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    for name, value in (("kind", kind), ("status", status), ("cursor", cursor)):
        if value is not None:
            params[name] = value

    def command(api: ApiClient) -> None:
        page = answer(api.call("GET", "/v1/jobs", params=params), as_json)
        if as_json:
            print_json(page)
            return
        if not page["items"]:
            typer.echo("no jobs")
        else:
            _print_table(page["items"])
        if page.get("next_cursor"):
            typer.echo(f"more: autoforge jobs list --cursor {page['next_cursor']}")

    _with_api(command)


@jobs_app.command("show")
def show_job(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show one job."""

    def command(api: ApiClient) -> None:
        job = answer(api.call("GET", _job_path(job_id)), as_json)
        if as_json:
            print_json(job)
        else:
            _print_job(job)

    _with_api(command)


@jobs_app.command("wait")
def wait_job(job_id: JobId, timeout: Timeout = None, as_json: JsonFlag = False) -> None:
    """Wait until a job ends, then show it.

    Exit code: 0 succeeded, 3 failed, 4 cancelled, 5 still running after --timeout
    (1: the API failed, 2: bad usage).
    """

    def command(api: ApiClient) -> None:
        _finish(wait_for_job(api, job_id, timeout=timeout, as_json=as_json), as_json)

    _with_api(command)


@jobs_app.command("cancel")
def cancel_job(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Cancel a queued or running job."""

    def command(api: ApiClient) -> None:
        job = answer(api.call("POST", _job_path(job_id, "cancel")), as_json)
        if as_json:
            print_json(job)
        else:
            typer.echo(f"job {job['id']} {job['status']}")

    _with_api(command)


@jobs_app.command("retry")
def retry_job(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Queue a failed job again."""

    def command(api: ApiClient) -> None:
        job = answer(api.call("POST", _job_path(job_id, "retry")), as_json)
        if as_json:
            print_json(job)
        else:
            typer.echo(f"job {job['id']} {job['status']} again")

    _with_api(command)
