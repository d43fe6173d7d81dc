"""The suite's own waiting and log reading (tests/support), which every slow test leans on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.logs import LogFile, LogSearch
from tests.support.polling import poll, wait_for


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as log:
        log.write(data)


def test_a_log_is_read_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    log = LogFile(path)
    assert log.text() == ""  # not written yet

    _append(path, "ready \N{CHECK MARK}\n".encode()[:-2])  # the mark cut in two
    assert log.text() == "ready "
    _append(path, "\N{CHECK MARK}\n".encode()[-2:] + b"second\n")
    assert log.text() == "ready \N{CHECK MARK}\nsecond\n"

    # What was read once is not read again: replacing those bytes changes nothing.
    path.write_bytes(b"X" * path.stat().st_size + b"third\n")
    assert log.text() == "ready \N{CHECK MARK}\nsecond\nthird\n"
    assert log.tail(2) == "second\nthird"


def test_a_search_finds_lines_written_before_it_and_lines_written_in_parts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "beat.log"
    log = LogFile(path)
    _append(path, b"beat: Starting...\nbeat: Acquired lock\n")
    log.text()  # someone else read it first

    before = LogSearch(log, r"beat: Starting\.\.\.")
    assert (match := before()) is not None
    assert match.group(0) == "beat: Starting..."

    node = LogSearch(log, r"(?m)^e2e-1@\S+ ready\.$")
    assert node() is None
    _append(path, b"e2e-1@host rea")
    assert node() is None
    _append(path, b"dy.\n")
    assert (match := node()) is not None
    assert match.group(0) == "e2e-1@host ready."


def test_poll_calls_the_probe_once_more_at_the_deadline() -> None:
    calls: list[float] = []
    ready_at = time.monotonic() + 0.2

    def probe() -> bool:
        calls.append(time.monotonic())
        return calls[-1] >= ready_at

    assert poll(probe, timeout=0.2, interval=0.15) is True
    assert poll(lambda: None, timeout=0.05) is None


def test_wait_for_returns_the_probes_value_or_fails_naming_what_it_waited_for() -> None:
    values = iter([None, False, {"status": "done"}])
    assert wait_for(lambda: next(values), timeout=5, what="the job") == {"status": "done"}

    with pytest.raises(pytest.fail.Exception, match=r"the job: not within 0\.05 s\nledger: \[\]"):
        wait_for(lambda: None, timeout=0.05, what="the job", describe=lambda: "ledger: []")
