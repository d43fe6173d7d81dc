"""An embedding job on a real worker: killed mid-run (SIGKILL), it resumes where its
committed batches end, and every prompt ends with exactly one vector."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from db.database import Database
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.jobs import JobStatus
from domain.prompts import Prompt
from jobs.outbox import enqueue
from providers.embeddings.local import LocalEmbedder
from tasks.embedding.repository import PromptEmbeddingRepository
from tasks.embedding.search import search_prompts
from tests.support.processes import Pipeline, open_pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

PROMPTS = 400
BATCH = 8


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, redis_url, embedding_batch_size=BATCH) as pipeline:
        yield pipeline


def _count(db: Database) -> int:
    with db.read_session() as session:
        return PromptEmbeddingRepository(session).count()


def test_a_job_killed_mid_run_resumes_without_duplicates(pipeline: Pipeline) -> None:
    db = Database(pipeline.settings)
    try:

        def add(session: Session) -> None:
            prompts = PromptRepository(session)
            for i in range(PROMPTS):
                prompts.add(
                    Prompt(title=f"Prompt {i}", content=f"Answer question number {i}.", user_id="u")
                )

        write_transaction(db, add)
        worker = pipeline.start_worker(("embeddings",), concurrency=1)
        job_id = enqueue(pipeline.runtime, "embedding", {"all_stale": True}).job.id

        wait_until(
            lambda: _count(db) >= 2 * BATCH,
            timeout=30,
            what="the first batches committed",
            describe=pipeline.describe,
        )
        for pid in worker.pool_processes():
            os.kill(pid, signal.SIGKILL)
        before = _count(db)
        assert before < PROMPTS, "killed mid-run"

        job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=60)
        assert job.attempts == 2
        assert _count(db) == PROMPTS
        with db.read_session() as session:
            assert PromptEmbeddingRepository(session).stale(LocalEmbedder().model, limit=1) == []
        # The second attempt computed only what the first had not committed (it may redo
        # the batch in flight at the kill, never the committed ones).
        assert job.result is not None
        assert job.result["embedded"] <= PROMPTS - before + BATCH
        assert job.result["done"] == job.result["total"] == job.result["embedded"]
        [hit] = search_prompts(db, LocalEmbedder(), "Prompt 123: Answer question number 123.", k=1)
        assert hit.prompt.title == "Prompt 123"
    finally:
        db.dispose()
