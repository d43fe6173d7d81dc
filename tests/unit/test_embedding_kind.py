"""The embedding kind's arguments, progress in prompts, and the search helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.jobs import Job, JobStatus, ProgressDetail
from tasks.embedding.job import progress_in_prompts
from tasks.embedding.kind import EmbeddingArguments
from tasks.embedding.repository import Candidate, embedding_text, fts_query
from tasks.embedding.search import fuse


@pytest.mark.parametrize(
    "body", [{"all_stale": True}, {"prompt_ids": ["a"]}, {"prompt_ids": ["a"], "all_stale": False}]
)
def test_one_target_is_valid(body: dict[str, Any]) -> None:
    EmbeddingArguments.model_validate(body)


@pytest.mark.parametrize(
    "body",
    [{}, {"all_stale": False}, {"all_stale": True, "prompt_ids": ["a"]}, {"prompt_ids": []}],
)
def test_none_or_both_targets_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmbeddingArguments.model_validate(body)


def test_progress_is_in_prompts() -> None:
    running = Job(
        kind="embedding",
        arguments={"all_stale": True},
        status=JobStatus.RUNNING,
        progress=0.25,
        result={"done": 16, "total": 64, "unit": "prompts"},
    )
    assert progress_in_prompts(running) == ProgressDetail(done=16, total=64, unit="prompts")
    queued = Job(kind="embedding", arguments={"prompt_ids": ["a", "b", "a"]})
    assert progress_in_prompts(queued) == ProgressDetail(done=0, total=2, unit="prompts")
    assert progress_in_prompts(Job(kind="embedding", arguments={"all_stale": True})) is None


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    vector = [Candidate("a", 0.9), Candidate("b", 0.8), Candidate("c", 0.1)]
    words = [Candidate("b", 3.0), Candidate("d", 1.0)]
    fused = fuse([vector, words])
    assert [c.prompt_id for c in fused] == ["b", "a", "d", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_a_query_becomes_quoted_words_without_common_ones() -> None:
    assert fts_query('Translate "this" to French; OR NEAR(x)') == (
        '"translate" OR "french" OR "near" OR "x"'
    )
    assert fts_query("to the of") is None
    assert fts_query("!!!") is None


def test_the_embedded_text_is_title_then_content() -> None:
    assert embedding_text("Greeting", "Say hello.") == "Greeting\n\nSay hello."


def test_the_openai_provider_asks_for_the_index_dimension(tmp_path: Path) -> None:
    from providers.embeddings import embedder_for
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path / "x.db",
        embedding_provider="openai",
        embedding_model="text-embedding-3-small",
        openai_api_key="sk-test",
    )
    embedder = embedder_for(settings)
    assert (embedder.model, embedder.dim) == ("text-embedding-3-small", 384)
