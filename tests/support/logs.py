"""Log files that processes under test append to, read incrementally.

Tests poll logs many times a second for minutes (a worker's log while jobs run, the
output of ``autoforge up``). :class:`LogFile` reads only the bytes written since its
last read and keeps the text it has seen, so a poll costs what is new, not the whole
file again; :class:`LogSearch` likewise searches each line once (a waiter still finds a
line written before it started waiting).
"""

from __future__ import annotations

import codecs
import re
import threading
from pathlib import Path


class LogFile:
    """The text a process has written to ``path`` so far (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        # Incremental: a character cut in two by a read is decoded once both halves are in.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        # Failure messages may be built on another thread (a describe() of a pipeline).
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LogFile({str(self.path)!r})"

    def text(self) -> str:
        """Everything written so far; only the bytes new since the last call are read."""
        with self._lock:
            try:
                with self.path.open("rb") as log:
                    log.seek(self._offset)
                    new = log.read()
            except FileNotFoundError:
                return self._text
            self._offset += len(new)
            self._text += self._decoder.decode(new)
            return self._text

    def tail(self, lines: int) -> str:
        """The last ``lines`` lines written so far."""
        return "\n".join(self.text().splitlines()[-lines:])


class LogSearch:
    """Searches a :class:`LogFile` for ``pattern`` from its beginning, each call looking
    only at lines that earlier calls have not searched in full.

    A match must lie within one line (the patterns of a log waiter do): the last line of a
    call may be incomplete, so the next call searches it again from its start.
    """

    def __init__(self, log: LogFile, pattern: str | re.Pattern[str]) -> None:
        self.log = log
        self.pattern = re.compile(pattern)
        self._start = 0

    def __call__(self) -> re.Match[str] | None:
        """The first match, or None if the log has none yet."""
        text = self.log.text()
        match = self.pattern.search(text, self._start)
        if match is None:
            # Every complete line has been searched: start at the first incomplete one.
            self._start = max(self._start, text.rfind("\n") + 1)
        return match
