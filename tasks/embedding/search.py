"""Search prompts by meaning (``vector``) or by meaning and words (``hybrid``).

``vector``: the query's vector against the vector index (``vector_top_k``), joined back
to live prompts; the score is the cosine similarity. ``hybrid``: that ranking and the
full-text ranking (FTS5, BM25 over titles and contents) fused by reciprocal rank
(each list gives a prompt ``1 / (60 + rank)``; the score is the sum), so a prompt that
both rankings like comes first, and exact words (a name, an error code) that a small
sentence model blurs still find their prompt.

A query's vector is cached in Redis under its model and the sha256 of its text, for
``EMBEDDING_QUERY_CACHE_TTL_S``: a repeated search does not run the model.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.settings import Settings
from db.database import Database
from db.repositories.prompts import PromptRepository
from domain.prompts import Prompt
from providers.embeddings import Embedder
from tasks.embedding.repository import Candidate, PromptEmbeddingRepository, text_sha256

log = logging.getLogger("autoforge.search")

SearchMode = Literal["vector", "hybrid"]
#: Reciprocal-rank fusion's constant (Cormack et al. 2009): damps the top ranks' weight.
RRF_K = 60
#: Candidates each ranking contributes to a hybrid search, at least.
HYBRID_DEPTH = 50
QUERY_CACHE_PREFIX = "autoforge:embedding:query"


@dataclass(frozen=True, slots=True)
class SearchHit:
    prompt: Prompt
    score: float


def query_vector(
    embedder: Embedder, query: str, *, redis: Any = None, ttl_s: int = 0
) -> list[float]:
    """The vector of ``query``, from the Redis cache when it holds it."""
    key = f"{QUERY_CACHE_PREFIX}:{embedder.model}:{text_sha256(query)}"
    if redis is not None and ttl_s > 0:
        try:
            cached = redis.get(key)
        except Exception as exc:  # the cache is an optimization: search works without it
            log.warning("query cache unavailable: %s", type(exc).__name__)
            cached = None
        if cached and len(cached) == 4 * embedder.dim:
            return list(struct.unpack(f"<{embedder.dim}f", cached))
    vector = embedder.embed([query])[0]
    if redis is not None and ttl_s > 0:
        try:
            redis.set(key, struct.pack(f"<{len(vector)}f", *vector), ex=ttl_s)
        except Exception as exc:
            log.warning("query cache unavailable: %s", type(exc).__name__)
    return vector


def fuse(rankings: Sequence[Sequence[Candidate]], *, k0: int = RRF_K) -> list[Candidate]:
    """Reciprocal-rank fusion of best-first rankings: best first (ties by id)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, candidate in enumerate(ranking, start=1):
            scores[candidate.prompt_id] = scores.get(candidate.prompt_id, 0.0) + 1.0 / (k0 + rank)
    return [
        Candidate(pid, score)
        for pid, score in sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    ]


def search_prompts(
    db: Database,
    embedder: Embedder,
    query: str,
    *,
    k: int = 10,
    mode: SearchMode = "vector",
    redis: Any = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """The ``k`` live prompts that best match ``query``, best first."""
    ttl = (settings or db.settings).embedding_query_cache_ttl_s
    vector = query_vector(embedder, query, redis=redis, ttl_s=ttl)
    with db.read_session() as session:
        repository = PromptEmbeddingRepository(session)
        if mode == "vector":
            ranked = repository.nearest(embedder.model, vector, k)
        else:
            depth = max(HYBRID_DEPTH, 3 * k)
            ranked = fuse(
                [
                    repository.nearest(embedder.model, vector, depth),
                    repository.matching(query, depth),
                ]
            )[:k]
        prompts = PromptRepository(session).get_many([c.prompt_id for c in ranked])
    return [SearchHit(prompts[c.prompt_id], c.score) for c in ranked if c.prompt_id in prompts]
