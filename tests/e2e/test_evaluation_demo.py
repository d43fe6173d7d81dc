"""The README's tour, as written, against ``autoforge up``: the echo evaluation completes.

The shell block under "A tour" is taken from the README and run with bash in the folder
``up`` runs in (it reads ``data/api-key`` from there); only the API's address changes, to
the free port this ``up`` listens on. The run it enqueues is then followed over HTTP.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_up import JOB_DEADLINE_S, autoforge_up, up_environment
from tests.support.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
README_API = "API=http://127.0.0.1:8000"


def tour_script() -> str:
    """The ``sh`` block of the README's "A tour" section."""
    text = README.read_text()
    section = text.split("## A tour", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README: no sh block under '## A tour'"
    return match.group(1)


def test_the_readme_tour_runs_an_echo_evaluation(tmp_path: Path) -> None:
    script = tour_script()
    assert script.count(README_API) == 1, "the tour no longer sets API as expected"

    with autoforge_up(tmp_path / "demo") as run:
        run.wait_ready()
        commands = (
            "set -euo pipefail\n"
            + script.replace(README_API, f"API={run.api}")
            + '\necho "TOUR_PROMPT=$PROMPT TOUR_JOB=$JOB"\n'
        )
        tour = subprocess.run(
            ["bash", "-c", commands],
            cwd=run.cwd,
            env=up_environment(run.ports),
            capture_output=True,
            text=True,
            timeout=JOB_DEADLINE_S,
        )
        assert tour.returncode == 0, f"{tour.stdout}\n{tour.stderr}\n{run.report()}"
        ids = re.search(r"TOUR_PROMPT=(\S+) TOUR_JOB=(\S+)", tour.stdout)
        assert ids, tour.stdout
        prompt_id, job_id = ids.groups()
        key = (run.cwd / "data" / "api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}

        def get(path: str, **params: str) -> Any:
            response = httpx.get(f"{run.api}{path}", params=params, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()

        evaluation = wait_for(
            lambda: (e := get(f"/v1/evaluations/{job_id}"))["status"] == "completed" and e,
            timeout=JOB_DEADLINE_S,
            what=f"evaluation {job_id} completed",
            describe=lambda: f"{get(f'/v1/jobs/{job_id}')}\n{run.report()}",
        )

        results = {r["test_case_name"]: r for r in evaluation["test_results"]}
        assert results["ann"]["actual_output"] == "Say hello to Ann in English."
        assert (results["ann"]["score"], results["ann"]["passed"]) == (1.0, True)
        # "Bonjour" is not in the echo (0), "Bob" is (1).
        assert (results["bob"]["score"], results["bob"]["passed"]) == (0.5, False)
        assert evaluation["overall_score"] == pytest.approx(0.75)
        assert evaluation["passed"] is True
        job = get(f"/v1/jobs/{job_id}")
        assert job["status"] == "succeeded"
        assert job["progress_detail"] == {"done": 2, "total": 2, "unit": "cases"}
        runs = get(f"/v1/prompts/{prompt_id}/evaluations")["items"]
        assert [r["id"] for r in runs] == [job_id]
        history = get(f"/v1/prompts/{prompt_id}/score-history", bucket="day")
        assert [(p["bucket"], p["runs"]) for p in history["points"]] == [
            (evaluation["completed_at"][:10], 1)
        ]
        run.record_descendants()  # everything it started is reaped at the end
