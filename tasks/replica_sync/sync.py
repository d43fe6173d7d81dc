"""One sync of one replica: a lock per replica, the sync in a child process with a
deadline, its failure classified.

- **One at a time.** ``<path>.sync-lock`` is locked (``flock``, non-blocking) for the
  whole sync: a second sync of the same replica finds it held and is *skipped*, not
  queued. The kernel drops the lock with its holder, so a killed worker leaves none.
- **A deadline.** The drivers wait for a silent server forever; the sync runs in
  ``child.py`` and is killed after ``REPLICA_SYNC_TIMEOUT_S`` (a transient failure).
  Both drivers apply pulled changes in their own transactions, so a sync killed at any
  instant leaves the file valid; the next sync goes on from where the file is.
- **Readers** are never blocked longer than one pull: the child holds the file only
  while it pulls.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.logging import redact
from core.settings import ReplicaConfig
from tasks.replica_sync.errors import (
    PrimaryMissing,
    SyncFailed,
    SyncRefused,
    SyncTimedOut,
    SyncUnavailable,
)

CHILD = Path(__file__).with_name("child.py")

_STATUS = re.compile(r"status=(\d{3})")
_TRANSIENT_WORDS = ("network error", "connect", "timed out", "timeout", "locked", "busy", "reset")


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync did."""

    replica: str
    skipped: bool
    changed: bool = False
    frames: int | None = None
    revision: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0


def lock_path(replica: ReplicaConfig) -> Path:
    """The file whose lock says "a sync of this replica is running"."""
    return replica.path.with_name(replica.path.name + ".sync-lock")


@contextmanager
def replica_lock(replica: ReplicaConfig) -> Iterator[bool]:
    """Yields True holding the replica's sync lock, False if another sync holds it."""
    path = lock_path(replica)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def sync_replica(
    replica: ReplicaConfig,
    *,
    timeout_s: float,
    on_child: Callable[[int], None] | None = None,
) -> SyncReport:
    """Sync ``replica`` once, unless another sync of it is running (then skipped).

    Raises:
        SyncUnavailable, SyncTimedOut: worth retrying (network, 5xx, locked, deadline).
        SyncRefused, PrimaryMissing, SyncFailed: retrying cannot help.
    """
    with replica_lock(replica) as held:
        if not held:
            return SyncReport(replica.name, skipped=True, started_at=time.time())
        started = time.time()
        outcome = _run_child(replica, timeout_s=timeout_s, on_child=on_child)
        return SyncReport(
            replica.name,
            skipped=False,
            changed=bool(outcome.get("changed")),
            frames=_int_or_none(outcome.get("frames")),
            revision=None if outcome.get("revision") is None else str(outcome.get("revision")),
            started_at=started,
            duration_s=time.time() - started,
        )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_child(
    replica: ReplicaConfig, *, timeout_s: float, on_child: Callable[[int], None] | None
) -> dict[str, object]:
    token = replica.auth_token.get_secret_value() if replica.auth_token else None
    # A driver's message may quote the URL, and a URL may carry user:password@.
    secrets = [value for value in (token, urlsplit(replica.sync_url).password) if value]
    replica.path.parent.mkdir(parents=True, exist_ok=True)
    request = {
        "protocol": replica.protocol,
        "path": str(replica.path),
        "sync_url": replica.sync_url,
        "auth_token": token,
    }
    process = subprocess.Popen(  # noqa: S603 - our own script, no shell
        [sys.executable, str(CHILD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a Ctrl-C meant for the worker does not cut a sync short
    )
    if on_child is not None:
        on_child(process.pid)
    try:
        stdout, stderr = process.communicate(json.dumps(request), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise SyncTimedOut(
            f"replica {replica.name!r}: the sync did not finish within {timeout_s:g} s "
            "(REPLICA_SYNC_TIMEOUT_S); it was stopped"
        ) from None
    except BaseException:  # a soft time limit or shutdown: never leave the child behind
        process.kill()
        process.wait()
        raise
    last_line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    try:
        outcome: dict[str, object] = json.loads(last_line)
    except ValueError:
        if process.returncode == -signal.SIGKILL:
            raise SyncUnavailable(
                f"replica {replica.name!r}: the sync process was killed"
            ) from None
        detail = redact(stderr.strip()[-300:], secrets) or f"exit status {process.returncode}"
        raise SyncFailed(f"replica {replica.name!r}: the sync process failed: {detail}") from None
    if outcome.get("ok"):
        return outcome
    raise classify(replica, redact(str(outcome.get("error", "")), secrets))


def classify(replica: ReplicaConfig, message: str) -> Exception:
    """The error a driver's failure message stands for (the message holds no token)."""
    name = replica.name
    status_match = _STATUS.search(message)
    status = int(status_match.group(1)) if status_match else None
    if status in (401, 403):
        return SyncRefused(
            f"replica {name!r}: the primary refused the credentials (HTTP {status}); "
            "check the replica's auth_token"
        )
    if status == 404:
        return PrimaryMissing(
            f"replica {name!r}: no primary database at the sync URL (HTTP 404); check sync_url"
        )
    if status is not None and (status >= 500 or status in (408, 429)):
        return SyncUnavailable(f"replica {name!r}: the primary answered HTTP {status}: {message}")
    lowered = message.lower()
    if status is None and any(word in lowered for word in _TRANSIENT_WORDS):
        return SyncUnavailable(f"replica {name!r}: {message}")
    return SyncFailed(f"replica {name!r}: the sync failed: {message}")
