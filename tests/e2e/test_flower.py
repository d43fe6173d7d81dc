"""Flower as a user sees it: behind basic auth, showing the worker online, in a real browser.

``autoforge up --no-api --no-beat`` starts the embedded Redis, a worker and Flower with a
generated login. Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) logs
in with that login and renders the workers page; the screenshot and the rendered DOM are
kept under ``artifacts/`` as the test's artifacts. Without Chromium the test is skipped,
except with ``CI`` set, where a missing browser fails the run.

With every secret configured (a Redis server that requires a password, an API key, an
OpenAI key, a backup key, a Flower login), ``autoforge up`` runs jobs that use each of
them; no secret may show in any process's output, in Flower's pages and API, or in the
API's answers.
"""

from __future__ import annotations

import base64
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from devstack.supervisor import WORKER_NODE_NAME
from tests.e2e.test_up import (
    JOB_DEADLINE_S,
    START_DEADLINE_S,
    STOP_DEADLINE_S,
    autoforge_up,
)
from tests.support import browser
from tests.support.fake_llm_server import FakeLLMServer
from tests.support.polling import wait_for
from tests.support.redis import REDIS_PASSWORD

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "artifacts"
# The workers table is filled by an XHR after load.
_FLOWER_FLAGS = ("--virtual-time-budget=5000",)


def _worker_row(dom: str, worker: str) -> str:
    """The workers table's row (HTML) for ``worker``."""
    rows: list[str] = [
        row for row in re.findall(r"<tr\b.*?</tr>", dom, re.S) if f">{worker}<" in row
    ]
    assert len(rows) == 1, f"no single row for {worker} in the rendered page:\n{dom[-3000:]}"
    return rows[0]


@pytest.mark.integration
@pytest.mark.slow
def test_flower_shows_the_worker_online_behind_basic_auth(tmp_path: Path) -> None:
    chromium = browser.chromium()
    worker = WORKER_NODE_NAME.replace("%h", socket.gethostname())
    with autoforge_up(tmp_path / "run", "--no-api", "--no-beat") as run:
        login_file = run.cwd / "data" / "flower-auth"
        wait_for(
            login_file.exists,
            timeout=START_DEADLINE_S,
            what="the Flower login is generated",
            describe=run.report,
        )
        login = login_file.read_text().strip()
        user, _, password = login.partition(":")
        assert user
        assert password
        assert run.stdout().count(login) == 1, "the new login is printed exactly once"

        def worker_online() -> bool:
            if not run.alive():
                pytest.fail(f"autoforge up exited early\n{run.report()}", pytrace=False)
            try:
                response = httpx.get(
                    f"{run.flower}/workers", params={"json": 1}, auth=(user, password), timeout=5
                )
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
            workers = response.json()["data"]
            return any(w["hostname"] == worker and w["status"] for w in workers)

        wait_for(
            worker_online,
            timeout=START_DEADLINE_S,
            what=f"Flower lists {worker} online",
            describe=run.report,
        )

        # No credentials, or wrong ones: 401, and the browser is asked to log in.
        anonymous = httpx.get(f"{run.flower}/workers", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        wrong = httpx.get(f"{run.flower}/workers", auth=(user, password + "x"), timeout=5)
        assert wrong.status_code == 401
        # The password reached Flower through its environment, not its command line.
        flower_pid = run.pid_of("flower")
        argv = Path(f"/proc/{flower_pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in argv

        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        url = f"http://{credentials}@127.0.0.1:{run.ports.flower}/workers"
        dom = browser.browse(
            chromium, tmp_path / "profile-dom", url, "--dump-dom", flags=_FLOWER_FLAGS
        )
        row = _worker_row(dom, worker)
        assert '<span class="badge bg-success">Online</span>' in row
        assert re.search(r'id="workers-online">\s*1\s*<', dom), "the summary counts 1 online"

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "flower-workers.png"
        screenshot.unlink(missing_ok=True)
        (ARTIFACTS / "flower-workers.html").write_text(dom)
        browser.browse(
            chromium,
            tmp_path / "profile-shot",
            url,
            f"--screenshot={screenshot}",
            flags=_FLOWER_FLAGS,
        )
        assert screenshot.read_bytes().startswith(b"\x89PNG"), "a PNG screenshot is kept"

        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(STOP_DEADLINE_S) == 0, run.report()


# --- no secret in sight ---------------------------------------------------------------------

API_KEY = "afk_e2e-SECRET-api-key-9d41"
OPENAI_KEY = "sk-e2e-SECRET-openai-key-77ab"
BACKUP_KEY = base64.b64encode(b"e2e-backup-key-SECRET-32-bytes!!").decode()
FLOWER_USER, FLOWER_PASSWORD = "admin", "flower-SECRET-password-0c3f"


def _job_succeeds(api: httpx.Client, job_id: str, report: Callable[[], str]) -> None:
    def final() -> str | None:
        status = str(api.get(f"/v1/jobs/{job_id}").json()["status"])
        return status if status in ("succeeded", "failed", "cancelled") else None

    status = wait_for(final, timeout=JOB_DEADLINE_S, what=f"job {job_id} finishes", describe=report)
    assert status == "succeeded", f"{api.get(f'/v1/jobs/{job_id}').text}\n{report()}"


@pytest.mark.integration
@pytest.mark.slow
def test_no_secret_reaches_any_output_flower_or_the_api(
    tmp_path: Path, password_redis_url: str
) -> None:
    secrets = {
        "the Redis password": REDIS_PASSWORD,
        "the API key": API_KEY,
        "the OpenAI key": OPENAI_KEY,
        "the backup key": BACKUP_KEY,
        "the Flower password": FLOWER_PASSWORD,
    }
    worker = WORKER_NODE_NAME.replace("%h", socket.gethostname())
    seen: dict[str, str] = {}  # where -> what it showed
    with FakeLLMServer() as llm:
        env = {
            "REDIS_URL": password_redis_url,
            "AUTOFORGE_API_KEYS": API_KEY,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": llm.base_url,
            "BACKUP_ENCRYPTION_KEY": BACKUP_KEY,
            "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
            "LOG_LEVEL": "DEBUG",
        }
        with (
            autoforge_up(tmp_path / "run", env=env) as run,
            httpx.Client(
                base_url=run.api, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
            ) as api,
            httpx.Client(
                base_url=run.flower, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=30
            ) as flower,
        ):
            run.wait_ready()
            # Work that uses every secret: Redis (all), the OpenAI key, the backup key.
            canary = api.post("/v1/jobs/canary", json={"sleep_ms": 10})
            prompt = api.post(
                "/v1/prompts", json={"title": "t", "content": "Hi {{ name }}.", "user_id": "u"}
            )
            evaluation = api.post(
                "/v1/jobs/evaluation",
                json={
                    "prompt_id": prompt.json()["id"],
                    "provider": "openai",
                    "model": "gpt-e2e",
                    "test_cases": [
                        {"name": "ann", "variables": {"name": "Ann"}, "scorers": ["json_valid"]}
                    ],
                },
            )
            backup = api.post("/v1/jobs/backup", json={})
            jobs = [canary, evaluation, backup]
            assert [r.status_code for r in jobs] == [202, 202, 202], [r.text for r in jobs]
            job_ids = [str(r.json()["id"]) for r in jobs]
            for job_id in job_ids:
                _job_succeeds(api, job_id, run.report)
            assert llm.request_count >= 1

            for response in (canary, prompt, evaluation, backup):
                seen[f"API {response.request.method} {response.request.url.path}"] = response.text
            paths = [
                "/v1/jobs",
                *(f"/v1/jobs/{job_id}" for job_id in job_ids),
                f"/v1/evaluations/{job_ids[1]}",
                "/v1/backups",
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
            ]
            for path in paths:
                response = api.get(path)
                assert response.status_code == 200, f"{path}: {response.text}"
                seen[f"API GET {path}"] = response.text

            flower_paths = [
                f"/worker/{worker}",  # every tab, the Config tab included
                "/workers?json=1",
                "/api/workers?refresh=1",
                f"/api/workers?workername={worker}",
                "/api/tasks",
                *(f"/api/task/info/{job_id}" for job_id in job_ids),
                "/api/task/types",
                "/api/queues/length",
                "/broker",
                "/tasks",
                "/metrics",
            ]
            for path in flower_paths:
                response = flower.get(path)
                assert response.status_code == 200, f"Flower {path}: {response.status_code}"
                seen[f"Flower {path}"] = response.text
            # The Config tab is there, with RedBeat's URL: the check below is not vacuous.
            assert "redbeat_redis_url" in seen[f"Flower /worker/{worker}"]

            run.process.send_signal(signal.SIGTERM)
            assert run.process.wait(STOP_DEADLINE_S) == 0, run.report()
        seen["autoforge up's output (every process)"] = run.stdout()
        seen["autoforge up's errors"] = run.stderr()

    for child in ("api", "worker", "beat", "flower"):
        assert re.search(rf"^{child} +\| ", seen["autoforge up's output (every process)"], re.M)
    leaks = [
        f"{name} in {where}"
        for where, text in seen.items()
        for name, secret in secrets.items()
        if secret in text
    ]
    assert not leaks, leaks
