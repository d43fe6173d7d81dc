"""Flower as a user sees it: behind basic auth, showing the worker online, in a real browser.

``autoforge up --no-api --no-beat`` starts the embedded Redis, a worker and Flower with a
generated login. Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) logs
in with that login and renders the workers page; the screenshot and the rendered DOM are
kept under ``artifacts/`` as the test's artifacts. Without Chromium the test is skipped,
except with ``CI`` set, where a missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.test_up import START_DEADLINE_S, STOP_DEADLINE_S, autoforge_up, wait_until
from workers.supervisor import WORKER_NODE_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "artifacts"
CHROMIUM_TIMEOUT_S = 120.0

# The flags that work on these machines (no sandbox as root; nothing phoning home).
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,800",
    # The workers table is filled by an XHR after load.
    "--virtual-time-budget=5000",
)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def _browse(chromium: str, profile: Path, url: str, *action: str) -> str:
    """Run headless Chromium once on ``url``; its stdout."""
    result = subprocess.run(
        [chromium, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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
    chromium = _chromium()
    worker = WORKER_NODE_NAME.replace("%h", socket.gethostname())
    with autoforge_up(tmp_path / "run", "--no-api", "--no-beat") as run:
        login_file = run.cwd / "data" / "flower-auth"
        wait_until(login_file.exists, "the Flower login is generated", START_DEADLINE_S, run.report)
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

        wait_until(worker_online, f"Flower lists {worker} online", START_DEADLINE_S, run.report)

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
        dom = _browse(chromium, tmp_path / "profile-dom", url, "--dump-dom")
        row = _worker_row(dom, worker)
        assert '<span class="badge bg-success">Online</span>' in row
        assert re.search(r'id="workers-online">\s*1\s*<', dom), "the summary counts 1 online"

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "flower-workers.png"
        screenshot.unlink(missing_ok=True)
        (ARTIFACTS / "flower-workers.html").write_text(dom)
        _browse(chromium, tmp_path / "profile-shot", url, f"--screenshot={screenshot}")
        assert screenshot.read_bytes().startswith(b"\x89PNG"), "a PNG screenshot is kept"

        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(STOP_DEADLINE_S) == 0, run.report()
