"""``enqueue`` accepts only the declared kinds that accept jobs, against a real database and
Redis: a job of an undeclared kind would never run (no worker has its task), so it is
refused before anything is written or published."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select

from core.settings import Settings
from db.models import JobModel
from jobs.errors import KindDisabled, UnknownKind
from jobs.outbox import enqueue, enqueue_many
from jobs.registry import KindRegistry
from jobs.runtime import Runtime
from tasks.registry import kind_registry
from tests.conftest import make_settings
from tests.support.api import llen
from workers.app import create_celery

pytestmark = pytest.mark.integration


@pytest.fixture
def make_runtime(
    migrated: Settings, db_path: Path, redis_url: str
) -> Iterator[Callable[[KindRegistry], Runtime]]:
    apps: list[Celery] = []

    def make(kinds: KindRegistry) -> Runtime:
        app = create_celery(make_settings(db_path, redis_url=redis_url), kinds)
        apps.append(app)
        runtime: Runtime = app.autoforge_runtime
        return runtime

    yield make
    for app in apps:
        app.autoforge_runtime.db.dispose()
        app.close()


def _jobs_in_ledger(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return int(session.scalar(select(func.count()).select_from(JobModel)) or 0)


def _waiting(redis_url: str, kinds: KindRegistry) -> int:
    return sum(llen(redis_url, queue) for queue in kinds.queues)


def test_a_kind_without_a_declaration_is_refused_and_nothing_is_written(
    make_runtime: Callable[[KindRegistry], Runtime], redis_url: str
) -> None:
    kinds = kind_registry()
    runtime = make_runtime(kinds)

    with pytest.raises(UnknownKind, match="no job kind 'teleport' is declared"):
        enqueue(runtime, "teleport", {})
    with pytest.raises(UnknownKind, match="no job kind 'teleport' is declared"):
        enqueue_many(runtime, "teleport", [{}, {}])

    assert _jobs_in_ledger(runtime) == 0
    assert _waiting(redis_url, kinds) == 0
    # A declared kind goes through the same runtime: the refusal is the kind's, not the
    # runtime's.
    assert enqueue(runtime, "canary", {}).published
    assert _jobs_in_ledger(runtime) == 1


def test_a_disabled_kind_is_refused_and_nothing_is_written(
    make_runtime: Callable[[KindRegistry], Runtime], redis_url: str
) -> None:
    declared = kind_registry()
    kinds = KindRegistry(
        dataclasses.replace(kind, enabled=False) if kind.name == "canary" else kind
        for kind in declared
    )
    runtime = make_runtime(kinds)

    with pytest.raises(KindDisabled, match="job kind 'canary' does not accept new jobs"):
        enqueue(runtime, "canary", {})
    with pytest.raises(KindDisabled, match="job kind 'canary' does not accept new jobs"):
        enqueue_many(runtime, "canary", [{}])

    assert _jobs_in_ledger(runtime) == 0
    assert _waiting(redis_url, kinds) == 0
