"""The embedding kind: compute and store the vectors that make prompts searchable by
meaning; stale prompts on a schedule. The logic is :mod:`tasks.embedding.job`."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobs.kind import KindSpec, Ref, Schedule

MAX_PROMPT_IDS = 10_000


class EmbeddingArguments(BaseModel):
    """``POST /v1/jobs/embedding`` body: some prompts by id, or every stale prompt."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_ids: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_PROMPT_IDS,
        description="Prompts to embed (those already up to date are skipped).",
    )
    all_stale: bool = Field(
        False,
        description="Embed every live prompt whose current title and content have no vector "
        "from the configured model.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.prompt_ids is None) == (not self.all_stale):
            raise ValueError("give either 'prompt_ids' or 'all_stale': true (not both)")
        return self


KIND = KindSpec(
    name="embedding",
    queue="embeddings",
    task_name="autoforge.embedding",
    arguments=EmbeddingArguments,
    example={"all_stale": True},
    summary="Enqueue an embedding job",
    description="Compute the vectors of prompts, by id (`prompt_ids`) or every stale one "
    '(`{"all_stale": true}`), with the configured model (`EMBEDDING_PROVIDER`, '
    "`EMBEDDING_MODEL`). Prompts whose text already has a vector from that model are "
    "skipped. Progress (`done`/`total` prompts) is on the job. Search with "
    "`GET /v1/prompts/search`.",
    logic=Ref("tasks.embedding.job:run_embedding_job"),
    models="tasks.embedding.models",
    progress_detail=Ref("tasks.embedding.job:progress_in_prompts"),
    max_attempts=5,
    # Each batch is committed as it goes: a run cut short by the limit is resumed.
    time_limit_s=1800,
    schedules=(
        Schedule(
            name="embed-stale",
            key="stale",
            arguments={"all_stale": True},
            cron_setting="embed_stale_cron",
            period="%Y-%m-%dT%H:%M",
        ),
    ),
)
