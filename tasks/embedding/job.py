"""The embedding job: compute missing and stale vectors in batches, resumably.

Each batch is read, embedded outside any transaction, then written in one short write
transaction (:meth:`PromptEmbeddingRepository.upsert`: an idempotent upsert that skips a
prompt edited meanwhile). A job killed or redelivered mid-way loses at most its current
batch: the next attempt finds the prompts already written up to date and goes on with
the rest; nothing is ever written twice. Texts whose vector the table already holds (the
same text, the same model) are copied, not computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from core.errors import TransientError
from db.database import Database
from db.transaction import write_transaction
from domain.jobs import Job, ProgressDetail
from jobs.context import JobContext, JobOutcome
from providers.embeddings import Embedder, embedder_for
from tasks.embedding.kind import EmbeddingArguments
from tasks.embedding.repository import PromptEmbeddingRepository, PromptText

log = logging.getLogger("autoforge.jobs.embedding")

PROGRESS_EVERY_S = 1.0

#: Called after each batch with (prompts done, prompts in all).
OnProgress = Callable[[int, int], None]


@dataclass
class EmbeddingReport:
    """What a run did: prompts done of total, vectors computed, reused from the table
    (same text, same model), and prompts skipped (edited or deleted meanwhile, or already
    up to date)."""

    model: str
    total: int = 0
    done: int = 0
    embedded: int = 0
    reused: int = 0
    skipped: int = 0


def embed_prompts(
    db: Database,
    embedder: Embedder,
    *,
    prompt_ids: Sequence[str] | None = None,
    all_stale: bool = False,
    batch_size: int = 64,
    on_progress: OnProgress | None = None,
) -> EmbeddingReport:
    """Embed the given prompts (those not up to date), or every stale one."""
    model = embedder.model
    report = EmbeddingReport(model=model)
    with db.read_session() as session:
        repository = PromptEmbeddingRepository(session)
        if all_stale:
            report.total = repository.count_stale(model)
            todo: list[PromptText] = []
        else:
            texts = repository.texts_of(prompt_ids or ())
            fresh = repository.up_to_date(model, texts)
            todo = [t for t in texts if t.prompt_id not in fresh]
            report.total = len(todo)
            report.skipped = len(set(prompt_ids or ())) - len(todo)

    last_id: str | None = None

    def batches() -> list[PromptText] | None:
        nonlocal todo, last_id
        if not all_stale:
            batch, todo = todo[:batch_size], todo[batch_size:]
            return batch or None
        with db.read_session() as session:
            page = PromptEmbeddingRepository(session).stale(
                model, limit=batch_size, after_id=last_id
            )
        if not page:
            return None
        last_id = page[-1].prompt_id
        return page

    while (batch := batches()) is not None:
        _embed_batch(db, embedder, batch, report)
        # Prompts made stale after the start are embedded too: the total grows with them.
        report.total = max(report.total, report.done)
        if on_progress is not None:
            on_progress(report.done, report.total)
    return report


def _embed_batch(
    db: Database, embedder: Embedder, batch: list[PromptText], report: EmbeddingReport
) -> None:
    with db.read_session() as session:
        cached = PromptEmbeddingRepository(session).cached_vectors(
            embedder.model, (t.sha256 for t in batch)
        )
    missing = {t.sha256: t.text for t in batch if t.sha256 not in cached}
    if missing:
        vectors = embedder.embed(list(missing.values()))
        cached.update(zip(missing, vectors, strict=True))
    items = [(t, cached[t.sha256]) for t in batch]
    written = write_transaction(
        db, lambda s: PromptEmbeddingRepository(s).upsert(embedder.model, embedder.dim, items)
    )
    report.embedded += len(missing)
    report.reused += len(batch) - len(missing)
    report.done += len(batch)
    report.skipped += len(batch) - len(written)


def run_embedding_job(context: JobContext) -> JobOutcome:
    arguments = EmbeddingArguments.model_validate(context.job.arguments)
    embedder = embedder_for(context.settings)
    last_report = 0.0

    def on_progress(done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < PROGRESS_EVERY_S and done < total:
            return
        last_report = now
        try:
            # Keep 1.0 for the job's end: "done" means the job succeeded.
            context.report_progress(
                min(done / total, 0.99) if total else 0.0,
                partial_result={"done": done, "total": total, "unit": "prompts"},
            )
        except TransientError:
            log.warning("could not record the progress of job %s", context.job.id)

    report = embed_prompts(
        context.db,
        embedder,
        prompt_ids=arguments.prompt_ids,
        all_stale=arguments.all_stale,
        batch_size=context.settings.embedding_batch_size,
        on_progress=on_progress,
    )
    return JobOutcome(result={**asdict(report), "unit": "prompts"})


def progress_in_prompts(job: Job) -> ProgressDetail | None:
    """The job's progress as prompts done of total (the counts it records as it runs)."""
    result = job.result or {}
    done, total = result.get("done"), result.get("total")
    if isinstance(done, int) and isinstance(total, int):
        return ProgressDetail(done=done, total=total, unit="prompts")
    ids = job.arguments.get("prompt_ids")
    if isinstance(ids, list) and ids:
        return ProgressDetail(done=0, total=len(set(ids)), unit="prompts")
    return None
