"""Vector and hybrid search over a small corpus with the real local model, on a real
libSQL file: what ranks first, soft-deleted prompts, staleness, the text cache, and
resuming a run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import pytest
import redis
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from core.settings import Settings
from db import migrations
from db.database import Database
from db.models import PromptModel
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt
from providers.embeddings.local import LocalEmbedder
from tasks.backup.service import create_backup, restore_backup
from tasks.embedding.job import embed_prompts
from tasks.embedding.models import VECTOR_INDEX
from tasks.embedding.repository import PromptEmbeddingRepository
from tasks.embedding.search import QUERY_CACHE_PREFIX, SearchMode, search_prompts
from tests.conftest import make_settings
from tests.support.prompt_corpus import CORPUS, QUERIES, add_corpus

pytestmark = pytest.mark.integration

EMBEDDER = LocalEmbedder()


class CountingEmbedder:
    """The local embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    @property
    def model(self) -> str:
        return EMBEDDER.model

    @property
    def dim(self) -> int:
        return EMBEDDER.dim

    def embed(self, texts: object) -> list[list[float]]:
        assert isinstance(texts, list)
        self.texts.extend(texts)
        return EMBEDDER.embed(texts)


@pytest.fixture
def corpus(database: Database) -> dict[str, list[str]]:
    ids = add_corpus(database)
    report = embed_prompts(database, EMBEDDER, all_stale=True, batch_size=5)
    assert (report.total, report.done, report.embedded) == (12, 12, 12)
    return ids


def _stale_ids(db: Database) -> list[str]:
    with db.read_session() as session:
        return [
            t.prompt_id for t in PromptEmbeddingRepository(session).stale(EMBEDDER.model, limit=100)
        ]


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_similar_prompts_rank_above_unrelated_ones(
    database: Database, corpus: dict[str, list[str]], mode: SearchMode
) -> None:
    for topic, query in QUERIES.items():
        hits = search_prompts(database, EMBEDDER, query, k=12, mode=mode)
        ranked = [hit.prompt.id for hit in hits]
        assert len(ranked) == 12
        top = set(ranked[:3])
        assert top == set(corpus[topic]), (topic, [h.prompt.title for h in hits[:3]])
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)


def test_vector_scores_are_cosine_similarities(
    database: Database, corpus: dict[str, list[str]]
) -> None:
    title, content = CORPUS["cooking"][1]
    hits = search_prompts(database, EMBEDDER, f"{title}\n\n{content}", k=1)
    assert hits[0].prompt.id == corpus["cooking"][1]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_hybrid_puts_an_exact_word_first(database: Database, corpus: dict[str, list[str]]) -> None:
    target = corpus["code"][2]  # the one prompt that says "revenue"
    hybrid = [
        h.prompt.id for h in search_prompts(database, EMBEDDER, "revenue", k=3, mode="hybrid")
    ]
    assert hybrid[0] == target


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_soft_deleted_prompts_are_never_returned(
    database: Database, corpus: dict[str, list[str]], mode: SearchMode
) -> None:
    gone = corpus["cooking"]

    def delete(session: Session) -> None:
        for prompt_id in gone:
            assert PromptRepository(session).soft_delete(prompt_id)

    write_transaction(database, delete)
    hits = search_prompts(
        database, EMBEDDER, QUERIES["cooking"] + " bread recipes", k=50, mode=mode
    )
    assert hits, "the other prompts are still found"
    assert not {h.prompt.id for h in hits} & set(gone)
    # Nor are they stale: a deleted prompt is never embedded again.
    assert not set(_stale_ids(database)) & set(gone)


def test_a_content_change_makes_the_prompt_stale_and_reembedding_moves_it(
    database: Database, corpus: dict[str, list[str]]
) -> None:
    assert _stale_ids(database) == []
    moved = corpus["support"][0]

    def edit(session: Session) -> None:
        session.execute(
            update(PromptModel)
            .where(PromptModel.id == moved)
            .values(content="Bake a chocolate cake with dark cocoa and fresh cream.")
        )

    write_transaction(database, edit)
    assert _stale_ids(database) == [moved]
    # A status change touches neither title nor content: nothing goes stale.
    write_transaction(
        database,
        lambda s: PromptRepository(s).set_status(corpus["code"][0], "active"),  # type: ignore[arg-type]
    )
    assert _stale_ids(database) == [moved]

    counting = CountingEmbedder()
    report = embed_prompts(database, counting, all_stale=True)
    assert (report.done, report.embedded) == (1, 1)
    assert len(counting.texts) == 1
    assert _stale_ids(database) == []
    cooking = [h.prompt.id for h in search_prompts(database, EMBEDDER, "chocolate dessert", k=2)]
    assert moved in cooking


def test_unchanged_and_identical_texts_compute_nothing(
    database: Database, corpus: dict[str, list[str]]
) -> None:
    counting = CountingEmbedder()
    every = [pid for ids in corpus.values() for pid in ids]
    report = embed_prompts(database, counting, prompt_ids=every)
    assert (report.total, report.embedded, report.skipped) == (0, 0, 12)
    # A copy of a prompt (same title and content) reuses the stored vector.
    copy = add_corpus(database, user_id="copier")["code"][0]
    report = embed_prompts(database, counting, all_stale=True)
    assert counting.texts == []
    assert (report.reused, report.embedded) >= (12, 0)
    with database.read_session() as session:
        vectors = PromptEmbeddingRepository(session).vectors([copy, corpus["code"][0]])
    assert vectors[copy] == vectors[corpus["code"][0]]


def test_a_run_stopped_mid_way_resumes_without_duplicates(database: Database) -> None:
    add_corpus(database)

    class Stop(Exception):
        pass

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        embed_prompts(
            database, EMBEDDER, all_stale=True, batch_size=5, on_progress=stop_after_first_batch
        )
    with database.read_session() as session:
        assert PromptEmbeddingRepository(session).count() == 5
    counting = CountingEmbedder()
    report = embed_prompts(database, counting, all_stale=True, batch_size=5)
    assert (report.total, report.done, report.embedded) == (7, 7, 7)
    with database.read_session() as session:
        assert PromptEmbeddingRepository(session).count() == 12


def test_progress_is_reported_after_each_batch_is_committed(database: Database) -> None:
    add_corpus(database)
    seen: list[tuple[int, int, int]] = []

    def on_progress(done: int, total: int) -> None:
        with database.read_session() as session:
            seen.append((done, total, PromptEmbeddingRepository(session).count()))

    embed_prompts(database, EMBEDDER, all_stale=True, batch_size=5, on_progress=on_progress)
    assert seen == [(5, 12, 5), (10, 12, 10), (12, 12, 12)]


def _sorted_ids(ids: dict[str, list[str]]) -> list[str]:
    return sorted(pid for group in ids.values() for pid in group)


def test_a_write_error_mid_run_ends_it_with_that_error_after_whole_batches(
    database: Database,
) -> None:
    ordered = _sorted_ids(add_corpus(database))
    # The database refuses the vector of the second batch's third prompt (ids in order).
    refused = ordered[7]
    write_transaction(
        database,
        lambda s: s.execute(
            text(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON prompt_embeddings "
                f"WHEN NEW.prompt_id = '{refused}' "
                "BEGIN SELECT RAISE(ABORT, 'vector refused by the test'); END"
            )
        ),
    )
    threads = set(threading.enumerate())
    with pytest.raises(Exception, match="vector refused by the test"):
        embed_prompts(database, EMBEDDER, all_stale=True, batch_size=5)
    assert set(threading.enumerate()) == threads
    with database.read_session() as session:
        stored = PromptEmbeddingRepository(session).vectors(ordered)
    assert sorted(stored) == ordered[:5]


def test_an_embedding_error_mid_run_ends_it_with_that_error_after_whole_batches(
    database: Database,
) -> None:
    ordered = _sorted_ids(add_corpus(database))

    class ModelFailed(Exception):
        pass

    class FailingOnSecondBatch(CountingEmbedder):
        def embed(self, texts: object) -> list[list[float]]:
            if self.texts:
                raise ModelFailed("the model failed")
            return super().embed(texts)

    threads = set(threading.enumerate())
    with pytest.raises(ModelFailed):
        embed_prompts(database, FailingOnSecondBatch(), all_stale=True, batch_size=5)
    assert set(threading.enumerate()) == threads
    with database.read_session() as session:
        stored = PromptEmbeddingRepository(session).vectors(ordered)
    assert sorted(stored) == ordered[:5]


def test_query_vectors_are_cached_in_redis(
    database: Database, corpus: dict[str, list[str]], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    counting = CountingEmbedder()
    first = search_prompts(database, counting, "plan my meals", k=3, redis=client)
    second = search_prompts(database, counting, "plan my meals", k=3, redis=client)
    assert counting.texts == ["plan my meals"]
    assert [h.prompt.id for h in first] == [h.prompt.id for h in second]
    keys: list[bytes] = client.keys(f"{QUERY_CACHE_PREFIX}:*")  # type: ignore[assignment]
    assert len(keys) == 1
    ttl: int = client.ttl(keys[0])  # type: ignore[assignment]
    assert 0 < ttl <= database.settings.embedding_query_cache_ttl_s


def test_search_works_after_the_migration_cycle(migrated: Settings) -> None:
    """Down past 0009 and up again: the vector index, the full-text index and their
    triggers come back (prompts written before are indexed again), nothing is left
    behind, and search works once the prompts are embedded again."""
    db = Database(migrated)
    try:
        ids = add_corpus(db)
        embed_prompts(db, EMBEDDER, all_stale=True)
    finally:
        db.dispose()
    migrations.downgrade(migrated, "0008")
    db = Database(migrated)
    try:
        with db.engine.connect() as conn:
            names = {
                str(name)
                for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master").all()
            }
        assert not {n for n in names if "embedding" in n or "fts" in n or "libsql" in n}
    finally:
        db.dispose()

    migrations.upgrade(migrated)
    db = Database(migrated)
    try:
        assert sorted(_stale_ids(db)) == sorted(pid for group in ids.values() for pid in group)
        # Words are searchable at once: the upgrade indexed the existing prompts.
        with db.read_session() as session:
            [match] = PromptEmbeddingRepository(session).matching("sourdough", 5)
        assert match.prompt_id == ids["cooking"][1]
        embed_prompts(db, EMBEDDER, all_stale=True)
        for mode in ("vector", "hybrid"):
            hits = search_prompts(db, EMBEDDER, QUERIES["support"], k=3, mode=mode)
            assert {h.prompt.id for h in hits} == set(ids["support"])
        # The triggers are back too: a new prompt is in the full-text index.
        write_transaction(
            db,
            lambda s: PromptRepository(s).add(Prompt(title="Zanzibar", content="x", user_id="u")),
        )
        with db.read_session() as session:
            assert len(PromptEmbeddingRepository(session).matching("zanzibar", 5)) == 1
    finally:
        db.dispose()


def _index_sql(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                (VECTOR_INDEX,),
            ).scalar_one()
        )


def test_the_index_is_remade_over_stored_vectors_both_ways(migrated: Settings) -> None:
    """Revision 0011 remakes the vector index with 1-bit neighbour copies over the
    vectors already stored (and its downgrade remakes the float8 one): search finds the
    same prompts, with the same scores, before and after, without embedding again."""
    db = Database(migrated)
    try:
        ids = add_corpus(db)
        embed_prompts(db, EMBEDDER, all_stale=True)
        before = search_prompts(db, EMBEDDER, QUERIES["support"], k=3, mode="vector")
        assert "float1bit" in _index_sql(db)
    finally:
        db.dispose()
    for revision, compression in (("0010", "float8"), ("head", "float1bit")):
        if revision == "head":
            migrations.upgrade(migrated)
        else:
            migrations.downgrade(migrated, revision)
        db = Database(migrated)
        try:
            assert f"compress_neighbors={compression}" in _index_sql(db)
            assert _stale_ids(db) == []
            hits = search_prompts(db, EMBEDDER, QUERIES["support"], k=3, mode="vector")
            assert {h.prompt.id for h in hits} == set(ids["support"])
            assert [(h.prompt.id, round(h.score, 6)) for h in hits] == [
                (h.prompt.id, round(h.score, 6)) for h in before
            ]
        finally:
            db.dispose()


@pytest.mark.parametrize("method", ["snapshot", "export"])
def test_a_restored_backup_searches_like_the_original(
    migrated: Settings, db_path: Path, tmp_path: Path, method: Literal["snapshot", "export"]
) -> None:
    """A page snapshot (a local file) and a logical export (what a remote database gets):
    the vector index and the full-text index come back whole."""
    settings = make_settings(
        db_path,
        backup_dir=tmp_path / "backups",
        data_dir=tmp_path / "data",
        backup_step_pause_ms=0,
    )
    db = Database(settings)
    try:
        add_corpus(db)
        embed_prompts(db, EMBEDDER, all_stale=True)
        expected = {
            mode: [
                h.prompt.id for h in search_prompts(db, EMBEDDER, QUERIES["code"], k=5, mode=mode)
            ]
            for mode in ("vector", "hybrid")
        }
        manifest = create_backup(settings, db, method=method)
    finally:
        db.dispose()
    assert manifest.verified
    assert manifest.method == method
    assert manifest.table_counts["prompt_embeddings"] == 12

    restored_path = tmp_path / "restored" / "autoforge.db"
    restore_backup(settings, manifest.id, to=restored_path)
    restored = Database(make_settings(restored_path))
    try:
        for mode, ids in expected.items():
            hits = search_prompts(restored, EMBEDDER, QUERIES["code"], k=5, mode=mode)  # type: ignore[arg-type]
            assert [h.prompt.id for h in hits] == ids
        with restored.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        restored.dispose()
