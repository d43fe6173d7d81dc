"""Pruning the ledger: finished jobs past retention deleted in short batches, then the
freed pages given back and the WAL checkpointed.

One DELETE of every old row held the write lock for seconds (1.7 s at 1M rows, 8.3 s
for a backlog of 466k) while every writer waited, and grew the WAL by the whole
deletion. Here each batch (:data:`db.repositories.jobs.PRUNE_BATCH_ROWS` rows, read
from the finished jobs' index) is a write transaction of its own, and the pruner then
sleeps at least as long as the batch took, and twice a waiting writer's longest pause
between tries (``DB_WRITE_BACKOFF_MAX_S``, :mod:`db.busy`): a writer that met a batch
gets the lock in the gap after it. Batches are small because a deleted row costs more
than its own pages: each of the table's indexes loses an entry, the primary key's at a
random place (ids are UUIDs), so 200 rows dirty a few hundred pages. At 1M jobs a batch
of 200 took 17 ms at the median (500: 52 ms, with outliers of 0.5 s on a busy machine).
The statistics triggers (``job_stats``) and the cascade to ``canary_effects`` run
inside each batch, as part of its deletes.

Batches stop at a time budget; what is left is deleted by the next run (each batch is
committed, so stopping anywhere loses nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.settings import Settings
from db.database import Database
from db.repositories.jobs import PRUNE_BATCH_ROWS, JobRepository
from db.space import Checkpoint, checkpoint, give_back_free_pages
from db.transaction import write_transaction

log = logging.getLogger("autoforge.maintenance.pruning")

#: Pages moved per ``incremental_vacuum`` step (1 MiB with 4 KiB pages).
VACUUM_STEP_PAGES = 256
#: How long one run may delete and give space back; the WAL checkpoint comes after.
PRUNE_BUDGET_S = 300.0


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one pruning run did."""

    deleted: int
    batches: int
    #: False when the budget ran out first: the next run deletes the rest.
    complete: bool
    pages_given_back: int
    checkpoint: Checkpoint | None
    longest_batch_s: float


def pause_between_writes(settings: Settings) -> Callable[[float], float]:
    """The pause after a maintenance write that took ``s`` seconds: at least as long
    (so maintenance holds the lock at most half the time), and twice a waiting writer's
    longest pause between tries (so its tries fall in the gap, even a late one)."""
    floor = 2 * settings.db_write_backoff_max_s
    return lambda took: max(took, floor)


def prune_ledger(
    db: Database,
    *,
    before: datetime,
    batch_rows: int = PRUNE_BATCH_ROWS,
    budget_s: float = PRUNE_BUDGET_S,
    vacuum_step_pages: int = VACUUM_STEP_PAGES,
) -> PruneReport:
    """Delete the jobs that finished before ``before``, ``batch_rows`` per write
    transaction; then give the freed pages back (a file created with incremental
    auto-vacuum) and checkpoint the WAL."""
    deadline = time.monotonic() + budget_s
    pause = pause_between_writes(db.settings)
    deleted = batches = 0
    longest = 0.0
    complete = False
    while time.monotonic() < deadline:
        started = time.monotonic()
        count = write_transaction(
            db, lambda s: JobRepository(s).prune_finished(before=before, limit=batch_rows)
        )
        took = time.monotonic() - started
        batches += 1
        deleted += count
        longest = max(longest, took)
        if count < batch_rows:
            complete = True
            break
        time.sleep(pause(took))
    given_back = 0
    if deleted:
        given_back = give_back_free_pages(
            db, step_pages=vacuum_step_pages, pause_s=pause, deadline=deadline
        )
    done = checkpoint(db)
    report = PruneReport(
        deleted=deleted,
        batches=batches,
        complete=complete,
        pages_given_back=given_back,
        checkpoint=done,
        longest_batch_s=longest,
    )
    log.info(
        "pruned %d finished jobs in %d batches (longest %.0f ms)%s; %d pages given back; "
        "WAL checkpoint %s",
        deleted,
        batches,
        longest * 1000,
        "" if complete else ", more left for the next run",
        given_back,
        "n/a" if done is None else ("done" if done.done else "incomplete (busy)"),
    )
    return report
