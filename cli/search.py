"""``autoforge embed`` and ``autoforge search``: prompts searchable by meaning, over the API.

``embed`` enqueues an embedding job (every stale prompt, or the prompts named) and waits
for it with a progress bar (prompts done of total); ``search`` asks
``GET /v1/prompts/search`` and prints the prompts found, best first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from cli import inputs
from cli.api_client import ApiClient, answer, print_json
from cli.errors import ExitCode
from cli.jobs import END_STATES, JsonFlag, Timeout, wait_for_job
from cli.options import command_settings

SearchMode = Literal["vector", "hybrid"]


def embed(
    all_stale: Annotated[
        bool,
        typer.Option(
            "--all-stale",
            help="Every live prompt whose title or content has no vector from the configured "
            "model yet.",
        ),
    ] = False,
    prompt_ids: Annotated[
        list[str] | None,
        typer.Option("--prompt-id", metavar="ID", help="A prompt to embed (repeatable)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the job to end (default).")
    ] = True,
    timeout: Timeout = None,
    as_json: JsonFlag = False,
) -> None:
    """Compute prompt vectors: --all-stale, or --prompt-id ID ... (an embedding job)."""
    if all_stale == bool(prompt_ids):
        raise typer.BadParameter(
            "give either --all-stale or --prompt-id (not both)", param_hint="'--all-stale'"
        )
    body: dict[str, Any] = {"all_stale": True} if all_stale else {"prompt_ids": prompt_ids}

    with ApiClient.from_settings(command_settings()) as api:
        job = answer(api.call("POST", "/v1/jobs/embedding", json=body), as_json)
        if not as_json:
            typer.echo(f"job {job['id']} accepted ({job['kind']}, {job['status']})")
        if not wait:
            if as_json:
                print_json(job)
            return
        finished = wait_for_job(api, job["id"], timeout=timeout, as_json=as_json)
    if as_json:
        print_json(finished)
    elif finished["status"] == "succeeded":
        result = finished["result"] or {}
        typer.echo(
            f"{result.get('done', 0)} of {result.get('total', 0)} prompts embedded with "
            f"{result.get('model')} ({result.get('embedded', 0)} computed, "
            f"{result.get('reused', 0)} reused)"
        )
    else:
        error = finished.get("error") or {}
        typer.echo(f"job {finished['id']} {finished['status']}: {error.get('message', '-')}")
    code = END_STATES[finished["status"]]
    if code != ExitCode.OK:
        raise typer.Exit(code)


def search(
    query: Annotated[
        str, typer.Argument(metavar="TEXT", help="What to look for.", callback=inputs.text)
    ],
    mode: Annotated[
        SearchMode,
        typer.Option("--mode", help="vector: by meaning; hybrid: by meaning and by words."),
    ] = "vector",
    k: Annotated[int, typer.Option("-k", "--limit", min=1, max=100, help="Prompts, at most.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Search live prompts by meaning, best first."""
    with ApiClient.from_settings(command_settings()) as api:
        found = answer(
            api.call("GET", "/v1/prompts/search", params={"q": query, "k": k, "mode": mode}),
            as_json,
        )
    if as_json:
        print_json(found)
        return
    items = found["items"]
    if not items:
        typer.echo("no prompts found (are they embedded? autoforge embed --all-stale)")
        return
    for item in items:
        prompt = item["prompt"]
        typer.echo(f"{item['score']:.3f}  {prompt['id']}  {_one_line(prompt['title'])}")


def _one_line(value: str, width: int = 80) -> str:
    line = " ".join(value.split())
    return line if len(line) <= width else line[: width - 1] + "…"
