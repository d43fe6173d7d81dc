"""Real interference at exact moments: a write lock held by another process, taken the
instant a client sends a given Redis command.

:class:`WriteLockHolder` is a separate OS process (started with ``spawn``) with its own
libSQL connection that takes the database's write lock (``BEGIN IMMEDIATE``) when told
and keeps it until told to let go. :class:`RedisTap` is a TCP proxy in front of a real
Redis server; when a client sends a chosen command it runs a callback *before*
forwarding the command, so the client sees the command's reply only after the callback
returned. Together: "the ledger is locked by someone else right after the publish".
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import threading
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

LOCK_TIMEOUT_S = 30.0
BUFFER = 65536


def _hold_write_lock(db_path: str, take: Event, taken: Event, release: Event) -> None:
    import libsql

    connection = libsql.connect(db_path)
    try:
        take.wait(LOCK_TIMEOUT_S * 4)
        connection.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait(LOCK_TIMEOUT_S * 4)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


class WriteLockHolder:
    """Another process that takes the database's write lock on demand and keeps it."""

    def __init__(self, db_path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._take, self._taken, self._release = context.Event(), context.Event(), context.Event()
        self._process = context.Process(
            target=_hold_write_lock,
            args=(str(db_path), self._take, self._taken, self._release),
            daemon=True,
        )
        self._process.start()

    def __enter__(self) -> WriteLockHolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def held(self) -> bool:
        return self._taken.is_set() and not self._release.is_set()

    def lock(self) -> None:
        """Take the write lock now; returns once it is held."""
        self._take.set()
        if not self._taken.wait(LOCK_TIMEOUT_S):
            raise TimeoutError("the lock holder did not get the write lock")

    def close(self) -> None:
        """Let go of the lock and end the process."""
        self._take.set()
        self._release.set()
        self._process.join(LOCK_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class RedisTap:
    """A TCP proxy to a real Redis that calls ``on_command`` (once) when a client sends
    ``command``, before the command reaches Redis."""

    def __init__(self, redis_url: str, command: bytes, on_command: Callable[[], None]) -> None:
        target = urlsplit(redis_url)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 6379)
        self._path = target.path
        self._command = command
        self._on_command = on_command
        self._fired = threading.Event()
        self._fire_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="redis-tap", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._listener.getsockname()[1]}{self._path}"

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    def __enter__(self) -> RedisTap:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            self._sockets.extend((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(BUFFER):
                if from_client and self._command in data:
                    with self._fire_lock:
                        if not self._fired.is_set():
                            self._on_command()
                            self._fired.set()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
