"""Persistence of prompt vectors and the search candidates. Takes a session; the caller
owns the transaction.

What is embedded for a prompt is :func:`embedding_text` (its title and content); a
vector is *stale* when its prompt's title or content changed after it was computed (a
trigger of revision 0009 marks it) or it was made by another model, and *missing* when
the prompt has none. Both are what an ``all_stale`` job embeds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from db.column_types import utcnow
from db.models import PromptModel
from tasks.embedding.models import VECTOR_INDEX, PromptEmbeddingModel

#: Rows per statement when reading by a list of values (SQLite's variable limit is 32766).
_IN_CHUNK = 500
#: Words of a search query passed to the full-text index, at most.
MAX_QUERY_TERMS = 32


def embedding_text(title: str, content: str) -> str:
    """The text whose vector stands for a prompt: its title, a blank line, its content."""
    return f"{title}\n\n{content}"


def text_sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class PromptText:
    """A live prompt's embedding text as it is now, and its sha256."""

    prompt_id: str
    text: str
    sha256: str

    @classmethod
    def of(cls, prompt_id: str, title: str, content: str) -> PromptText:
        value = embedding_text(title, content)
        return cls(prompt_id, value, text_sha256(value))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A prompt found by one ranking, with that ranking's score (higher is better)."""

    prompt_id: str
    score: float


class PromptEmbeddingRepository:
    """The ``prompt_embeddings`` table, and the vector and full-text indexes."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ------------------------------------------------------------------ what to embed

    def _stale_query(self, model: str) -> Select[str, str, str]:
        e = PromptEmbeddingModel
        return (
            select(PromptModel.id, PromptModel.title, PromptModel.content)
            .outerjoin(e, e.prompt_id == PromptModel.id)
            .where(PromptModel.deleted_at.is_(None))
            .where((e.prompt_id.is_(None)) | (e.model != model) | (e.stale != 0))
        )

    def stale(self, model: str, *, limit: int, after_id: str | None = None) -> list[PromptText]:
        """Live prompts without an up-to-date vector from ``model``, by id, after ``after_id``
        (keyset pages: a page's last id is the next page's ``after_id``)."""
        query = self._stale_query(model)
        if after_id is not None:
            query = query.where(PromptModel.id > after_id)
        query = query.order_by(PromptModel.id).limit(limit)
        return [
            PromptText.of(pid, title, content)
            for pid, title, content in self.session.execute(query)
        ]

    def count_stale(self, model: str) -> int:
        """How many live prompts :meth:`stale` would list in all."""
        query = select(text("count(*)")).select_from(self._stale_query(model).subquery())
        return int(self.session.execute(query).scalar_one())

    def texts_of(self, prompt_ids: Iterable[str]) -> list[PromptText]:
        """The live prompts among ``prompt_ids``, by id."""
        ids = sorted(set(prompt_ids))
        found: list[PromptText] = []
        for start in range(0, len(ids), _IN_CHUNK):
            query = select(PromptModel.id, PromptModel.title, PromptModel.content).where(
                PromptModel.id.in_(ids[start : start + _IN_CHUNK]),
                PromptModel.deleted_at.is_(None),
            )
            found.extend(PromptText.of(*row) for row in self.session.execute(query))
        return sorted(found, key=lambda t: t.prompt_id)

    def up_to_date(self, model: str, texts: Sequence[PromptText]) -> set[str]:
        """The prompts among ``texts`` whose stored vector is of exactly that text by
        ``model`` (nothing to do for them)."""
        by_id = {t.prompt_id: t.sha256 for t in texts}
        ids = sorted(by_id)
        done: set[str] = set()
        e = PromptEmbeddingModel
        for start in range(0, len(ids), _IN_CHUNK):
            rows = self.session.execute(
                select(e.prompt_id, e.content_sha256).where(
                    e.prompt_id.in_(ids[start : start + _IN_CHUNK]), e.model == model
                )
            )
            done.update(pid for pid, sha in rows if by_id[pid] == sha)
        return done

    # ------------------------------------------------------------------ the cache

    def cached_vectors(self, model: str, shas: Iterable[str]) -> dict[str, list[float]]:
        """Stored vectors of texts with these sha256 by ``model`` (from any prompt):
        identical text is never embedded twice."""
        wanted = sorted(set(shas))
        found: dict[str, list[float]] = {}
        e = PromptEmbeddingModel
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = self.session.execute(
                select(e.content_sha256, e.embedding).where(
                    e.model == model, e.content_sha256.in_(wanted[start : start + _IN_CHUNK])
                )
            )
            for sha, vector in rows:
                found.setdefault(sha, vector)
        return found

    # ------------------------------------------------------------------ writing

    def upsert(
        self, model: str, dim: int, items: Sequence[tuple[PromptText, Sequence[float]]]
    ) -> list[str]:
        """Store each prompt's vector (replacing the one it had), if its text is still
        the text embedded; returns the ids written.

        A prompt edited or soft-deleted since its text was read is skipped: its row stays
        stale (or absent), for the next run. Run this in the write transaction: no edit
        can slip in between this check and the write.
        """
        if not items:
            return []
        current = {t.prompt_id: t.sha256 for t in self.texts_of(t.prompt_id for t, _ in items)}
        now = utcnow()
        rows = [
            {
                "prompt_id": t.prompt_id,
                "model": model,
                "dim": dim,
                "content_sha256": t.sha256,
                "embedding": list(vector),
                "stale": 0,
                "created_at": now,
            }
            for t, vector in items
            if current.get(t.prompt_id) == t.sha256
        ]
        if not rows:
            return []
        statement = insert(PromptEmbeddingModel)
        statement = statement.on_conflict_do_update(
            index_elements=[PromptEmbeddingModel.prompt_id],
            set_={
                name: statement.excluded[name]
                for name in ("model", "dim", "content_sha256", "embedding", "stale", "created_at")
            },
        )
        self.session.execute(statement, rows)
        return [str(row["prompt_id"]) for row in rows]

    # ------------------------------------------------------------------ reading

    def count(self, model: str | None = None) -> int:
        query = select(text("count(*)")).select_from(PromptEmbeddingModel)
        if model is not None:
            query = query.where(PromptEmbeddingModel.model == model)
        return int(self.session.execute(query).scalar_one())

    def vectors(self, prompt_ids: Iterable[str]) -> dict[str, tuple[str, list[float]]]:
        """Stored (model, vector) by prompt id."""
        ids = sorted(set(prompt_ids))
        e = PromptEmbeddingModel
        out: dict[str, tuple[str, list[float]]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            rows = self.session.execute(
                select(e.prompt_id, e.model, e.embedding).where(
                    e.prompt_id.in_(ids[start : start + _IN_CHUNK])
                )
            )
            out.update({pid: (model, vector) for pid, model, vector in rows})
        return out

    # ------------------------------------------------------------------ search candidates

    def nearest(self, model: str, query: Sequence[float], k: int) -> list[Candidate]:
        """Up to ``k`` live prompts nearest to ``query`` by cosine, through the vector
        index (``vector_top_k``); score: cosine similarity, best first."""
        if k <= 0:
            return []
        # Rows of another model (after a model change, until re-embedded) are in the
        # index too and are dropped by the join: ask for some more.
        fetch = min(k * 2 + 10, 2000)
        vector = json.dumps([float(x) for x in query])
        rows = self.session.execute(
            _NEAREST.bindparams(bindparam("fetch"), bindparam("k")),
            {"q": vector, "fetch": fetch, "model": model, "k": k},
        )
        return [Candidate(pid, 1.0 - float(distance)) for pid, distance in rows]

    def matching(self, query: str, k: int) -> list[Candidate]:
        """Up to ``k`` live prompts whose title or content contain words of ``query``,
        by BM25 (title words weigh double); score: -BM25 (higher is better)."""
        match = fts_query(query)
        if match is None or k <= 0:
            return []
        rows = self.session.execute(
            text(
                "SELECT f.prompt_id, bm25(prompts_fts, 0.0, 2.0, 1.0) AS s "
                "FROM prompts_fts AS f JOIN prompts AS p ON p.id = f.prompt_id "
                "WHERE prompts_fts MATCH :match AND p.deleted_at IS NULL "
                "ORDER BY s, f.prompt_id LIMIT :k"
            ),
            {"match": match, "k": k},
        )
        return [Candidate(pid, -float(score)) for pid, score in rows]


_NEAREST = text(
    "SELECT e.prompt_id, vector_distance_cos(e.embedding, vector32(:q)) AS d "  # noqa: S608
    f"FROM vector_top_k('{VECTOR_INDEX}', vector32(:q), :fetch) AS t "
    "JOIN prompt_embeddings AS e ON e.rowid = t.id "
    "JOIN prompts AS p ON p.id = e.prompt_id "
    "WHERE p.deleted_at IS NULL AND e.model = :model "
    "ORDER BY d, e.prompt_id LIMIT :k"
)


def fts_query(query: str) -> str | None:
    """A user's words as an FTS5 query: any of them (OR), each quoted, so that no input is
    FTS5 syntax; common English function words are left out (in a small corpus they
    would match nearly everything). ``None`` if no word is left."""
    words = [w.lower() for w in re.findall(r"\w+", query)]
    kept = [w for w in dict.fromkeys(words) if w not in STOP_WORDS][:MAX_QUERY_TERMS]
    if not kept:
        return None
    return " OR ".join(f'"{word}"' for word in kept)


#: Words that say little about what a prompt is about.
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    just me more most my no nor not now of off on once only or other our out over own
    same she should so some such than that the their them then there these they this
    those through to too under until up very was we were what when where which while who
    whom why will with would you your another""".split()  # noqa: SIM905 - a word list
)
