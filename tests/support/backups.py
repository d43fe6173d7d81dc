"""Helpers shared by the tests of the wired backup job, its API and its CLI (no tests here).

Keys are fixed test keys (base64 of 32 bytes), so a test can look for them, in every
encoding, in whatever a process printed or answered.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import libsql
from prometheus_client.parser import text_string_to_metric_families

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def key_forms(key: str) -> list[str]:
    """The ways a key could leak: its base64 form, its raw bytes as hex, JSON-escaped."""
    raw = base64.b64decode(key)
    return [key, raw.hex(), json.dumps(key)[1:-1]]


def assert_key_absent(key: str, *texts: str) -> None:
    """Fail if any form of ``key`` appears in any of ``texts``."""
    for number, text in enumerate(texts):
        for form in key_forms(key):
            assert form not in text, f"the backup key appears in text #{number}: {text[:400]}"


def flip_one_byte(path: Path) -> None:
    """Change one bit of one byte in the middle of ``path``, in place."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def parse_metrics(text: str) -> Samples:
    """Prometheus text format as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def execute(path: Path, *statements: str) -> None:
    """Run statements on a libSQL file, each in its own autocommit transaction."""
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement).fetchall()
    finally:
        connection.close()


def query(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = libsql.connect(str(path))
    try:
        return [tuple(row) for row in connection.execute(sql, parameters).fetchall()]
    finally:
        connection.close()


# --- a writer in its own process ----------------------------------------------------------
#
# Its own process, not a thread: the libSQL SDK keeps the GIL while a statement waits on
# busy_timeout, so a writer thread waiting for the lock would stall a test thread that
# holds it (e.g. mid-enqueue) until the timeout ran out.

WRITER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Commit:
    """One writer transaction: the row it added, and the backup job's status around it."""

    row_id: int
    status_before: str | None
    status_after: str | None


@dataclass(frozen=True)
class WriterReport:
    commits: list[Commit]
    error: str = ""


def _newest_backup_status(connection: Any) -> str | None:
    rows = connection.execute(
        "SELECT status FROM jobs WHERE kind = 'backup' ORDER BY created_at DESC LIMIT 1"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def writer_process(path: str, started: Event, stop: Event, results: Any) -> None:
    """Commit one row into pair_a and pair_b per transaction until told to stop.

    Around each commit it reads the status of the newest backup job in the ledger, so a
    commit seen ``running`` before and after happened while that job ran.
    """
    commits: list[Commit] = []
    try:
        connection = libsql.connect(path, isolation_level=None, timeout=10)
        connection.execute("PRAGMA busy_timeout=10000").fetchall()
        while not stop.is_set():
            before = _newest_backup_status(connection)
            row_id = len(commits) + 1
            connection.execute("BEGIN IMMEDIATE").fetchall()
            connection.execute("INSERT INTO pair_a (id) VALUES (?)", (row_id,)).fetchall()
            connection.execute("INSERT INTO pair_b (id) VALUES (?)", (row_id,)).fetchall()
            connection.execute("COMMIT").fetchall()
            commits.append(Commit(row_id, before, _newest_backup_status(connection)))
            if row_id == 20:
                started.set()
            time.sleep(0.001)
        connection.close()
        results.put(WriterReport(commits))
    except Exception as exc:  # reported to the test, which fails with it
        started.set()
        results.put(WriterReport(commits, error=repr(exc)))


class Writer:
    """A running :func:`writer_process`; :meth:`stop` returns its commits."""

    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._started = context.Event()
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=writer_process,
            args=(str(path), self._started, self._stop, self._results),
            daemon=True,
        )
        self._process.start()
        assert self._started.wait(WRITER_TIMEOUT_S), "the writer did not start committing"

    def stop(self) -> list[Commit]:
        self._stop.set()
        try:
            report: WriterReport = self._results.get(timeout=WRITER_TIMEOUT_S)
        finally:
            self._process.join(WRITER_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(WRITER_TIMEOUT_S)
            self._results.close()
            self._results.join_thread()
        assert not report.error, report.error
        return report.commits
