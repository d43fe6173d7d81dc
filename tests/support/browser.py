"""Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) for tests of web pages.

Without Chromium a test is skipped, except with ``CI`` set, where a missing browser fails
the run. :data:`LOOPBACK_ONLY` keeps the browser off every network but this machine's
loopback, so a page that needs the internet shows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

CHROMIUM_TIMEOUT_S = 120.0

# The flags that work on these machines (no sandbox as root; nothing phoning home).
BASE_FLAGS = (
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
)

#: No host name resolves but localhost and 127.0.0.1, and every request that is not to
#: loopback goes to a proxy that does not exist (Chromium never proxies loopback).
LOOPBACK_ONLY = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


def chromium() -> str:
    """The Chromium executable; skips the test (fails it under ``CI``) if there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def browse(browser: str, profile: Path, url: str, *action: str, flags: Sequence[str] = ()) -> str:
    """Run headless Chromium once on ``url`` with ``action`` (e.g. ``--dump-dom``); its
    stdout."""
    result = subprocess.run(
        [browser, *BASE_FLAGS, *flags, f"--user-data-dir={profile}", *action, url],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
