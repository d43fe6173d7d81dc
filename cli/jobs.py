"""``autoforge enqueue`` and ``autoforge jobs ...``: the job commands, over the HTTP API.

They talk to the API at ``API_URL`` with the key from ``AUTOFORGE_API_KEY`` (or, in
``local``, the generated one), never to the database or Redis directly: the API is the
one place where jobs are accepted. Every command prints a compact human form, or with
``--json`` the API's JSON. Failures are one line on stderr and exit 1 (2 for a bad
command line or configuration). The key is never printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from core.errors import ConfigurationError
from core.local_secrets import client_api_key
from core.settings import load_settings

TIMEOUT_S = 10.0

jobs_app = typer.Typer(
    help="Jobs in the ledger: list, show, cancel, retry (through the API).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]


class ApiCallFailed(Exception):
    """The API could not be reached or answered with an error (already explained)."""


class JobsApi:
    """A small client of the API's ``/v1/jobs`` endpoints."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            timeout=TIMEOUT_S,
        )

    def __enter__(self) -> JobsApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The API's answer; raises :class:`ApiCallFailed` if it cannot be reached."""
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            _fail(f"the API at {self.base_url} did not answer within {TIMEOUT_S:g} s")
        except httpx.TransportError as exc:
            _fail(f"cannot reach the API at {self.base_url} ({_reason(exc)}); is it running?")


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise ApiCallFailed(message)


def _api() -> JobsApi:
    settings = load_settings()
    key = client_api_key(settings)
    if key is None:
        raise ConfigurationError(
            "no API key: set AUTOFORGE_API_KEY (or run 'autoforge up' once to generate one)"
        )
    return JobsApi(settings.api_url, key)


def _run(command: Callable[[JobsApi], None]) -> None:
    """Run ``command(api)``; configuration errors exit 2, API failures exit 1."""
    try:
        with _api() as api:
            command(api)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ApiCallFailed:
        raise typer.Exit(1) from None


def _answer(response: httpx.Response, as_json: bool) -> Any:
    """The response's JSON; an error status is explained on stderr and fails the command."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and data is not None:
        return data
    if as_json and data is not None:
        _print_json(data)
    _fail(f"HTTP {response.status_code}: {_error_message(response, data)}")


def _error_message(response: httpx.Response, data: Any) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if data.get("detail"):
            return json.dumps(data["detail"])
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _read_body(value: str) -> dict[str, Any]:
    """``--body``: a JSON object, inline or ``@path`` to a file holding one."""
    source = "--body"
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        source = f"--body file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror or exc}", param_hint="'--body'"
            ) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{source} is not valid JSON: {exc}", param_hint="'--body'"
        ) from None
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{source} must be a JSON object", param_hint="'--body'")
    return body


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


def enqueue(
    kind: Annotated[
        str, typer.Argument(help="canary, evaluation, embedding, backup, replica-sync")
    ],
    body: Annotated[str, typer.Option("--body", help="The job's JSON body, or @file.json.")] = "{}",
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Replaying the key returns the same job."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a job of KIND through the API."""
    arguments = _read_body(body)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}

    def command(api: JobsApi) -> None:
        response = api.call(
            "POST", f"/v1/jobs/{quote(kind, safe='')}", json=arguments, headers=headers
        )
        job = _answer(response, as_json)
        if as_json:
            _print_json(job)
        elif response.status_code == 200:
            typer.echo(
                f"job {job['id']} already exists for this key ({job['kind']}, {job['status']})"
            )
        else:
            typer.echo(f"job {job['id']} accepted ({job['kind']}, {job['status']})")

    _run(command)


@jobs_app.command("list")
def list_jobs(
    kind: Annotated[str | None, typer.Option("--kind", help="Only jobs of this kind.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, succeeded, failed, cancelled")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    for name, value in (("kind", kind), ("status", status), ("cursor", cursor)):
        if value is not None:
            params[name] = value

    def command(api: JobsApi) -> None:
        page = _answer(api.call("GET", "/v1/jobs", params=params), as_json)
        if as_json:
            _print_json(page)
            return
        if not page["items"]:
            typer.echo("no jobs")
        else:
            _print_table(page["items"])
        if page.get("next_cursor"):
            typer.echo(f"more: autoforge jobs list --cursor {page['next_cursor']}")

    _run(command)


@jobs_app.command("show")
def show_job(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False
) -> None:
    """Show one job."""

    def command(api: JobsApi) -> None:
        job = _answer(api.call("GET", _job_path(job_id)), as_json)
        if as_json:
            _print_json(job)
        else:
            _print_job(job)

    _run(command)


@jobs_app.command("cancel")
def cancel_job(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False
) -> None:
    """Cancel a queued or running job."""

    def command(api: JobsApi) -> None:
        job = _answer(api.call("POST", _job_path(job_id, "cancel")), as_json)
        if as_json:
            _print_json(job)
        else:
            typer.echo(f"job {job['id']} {job['status']}")

    _run(command)


@jobs_app.command("retry")
def retry_job(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False
) -> None:
    """Queue a failed job again."""

    def command(api: JobsApi) -> None:
        job = _answer(api.call("POST", _job_path(job_id, "retry")), as_json)
        if as_json:
            _print_json(job)
        else:
            typer.echo(f"job {job['id']} {job['status']} again")

    _run(command)
