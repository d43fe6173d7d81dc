"""One sync of one replica, in a process of its own (``python child.py``).

The worker runs each sync here so that it can end a sync that hangs (a server that
accepts and never answers: the drivers have no deadline of their own) by killing this
process, and so that the worker itself never holds the replica's file open. Self-contained
on purpose (standard library and the driver only): it is run as a script.

Reads one JSON object on stdin (``protocol``, ``path``, ``sync_url``, ``auth_token``:
the token never appears on a command line) and writes one JSON object on stdout:
``{"ok": true, "changed": bool, "frames": int|null, "revision": str|null}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def _die_with_parent() -> None:
    # A worker killed with SIGKILL cannot end its child: the child notices and goes.
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _turso_sync(path: str, url: str, token: str | None) -> dict[str, Any]:
    import turso.sync

    # A new replica (no sync metadata yet, ``<path>-info``: a bootstrap killed mid-way
    # leaves none) is bootstrapped from the primary as it is opened; its pull then finds
    # nothing newer. Either way the file changed.
    bootstrapping = not os.path.exists(path + "-info")
    connection = turso.sync.connect(path, url, auth_token=token, client_name="autoforge-replica")
    try:
        changed = bool(connection.pull()) or bootstrapping
        stats = connection.stats()
        return {
            "changed": changed,
            "frames": None,
            "revision": None if stats.revision is None else str(stats.revision),
            "received_bytes": stats.network_received_bytes,
        }
    finally:
        connection.close()


def _libsql_sync(path: str, url: str, token: str | None) -> dict[str, Any]:
    import libsql

    bootstrapping = not os.path.exists(path + "-info")
    connection = libsql.connect(path, sync_url=url, auth_token=token or "")
    try:
        outcome = connection.sync()
        # Some SDK versions say how many frames a sync applied; 0.1.x returns None.
        frames = outcome if isinstance(outcome, int) else None
        changed = bootstrapping or frames is None or frames > 0
        return {"changed": changed, "frames": frames, "revision": None}
    finally:
        connection.close()


def main() -> int:
    request = json.loads(sys.stdin.read())
    threading.Thread(target=_die_with_parent, daemon=True).start()
    token = request.get("auth_token")
    sync = _turso_sync if request["protocol"] == "turso-sync" else _libsql_sync
    try:
        report = sync(request["path"], request["sync_url"], token)
    except Exception as exc:  # the parent classifies the message
        message = f"{type(exc).__name__}: {exc}"
        if token:
            message = message.replace(token, "***")
        print(json.dumps({"ok": False, "error": message}), flush=True)
        return 1
    print(json.dumps({"ok": True, **report}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
