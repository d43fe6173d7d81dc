"""The engine: PRAGMAs on every connection, foreign keys, slow-query log, query plans."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from core.settings import Settings
from db.database import Database
from db.explain import explain, render_plan
from db.models import EvaluationModel, PromptModel
from db.repositories import EvaluationRepository, PromptRepository
from db.transaction import write_transaction
from domain.evaluations import Evaluation
from domain.prompts import Prompt
from tests.conftest import copy_migrated, make_settings

pytestmark = pytest.mark.integration

ACTIVE_PROMPTS_NEWEST_FIRST = (
    "SELECT id, title FROM prompts WHERE user_id = 'u1' AND status = 'active' "
    "AND deleted_at IS NULL ORDER BY created_at DESC"
)


def _pragmas(db: Database) -> dict[str, object]:
    with db.read_session() as session:
        connection = session.connection()
        return {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }


@pytest.mark.parametrize(
    ("overrides", "synchronous"),
    [({}, 1), ({"db_busy_timeout_ms": 1234, "db_synchronous": "full"}, 2)],
)
def test_every_connection_gets_its_pragmas(
    db_path: Path, overrides: dict[str, object], synchronous: int
) -> None:
    db = Database(make_settings(db_path, **overrides))
    try:
        # Check several pooled connections, not only the first.
        with db.read_session() as first, db.read_session() as second:
            first.connection()
            second.connection()
            expected = {
                "journal_mode": "wal",
                # Never wait inside the SDK (it keeps the GIL): waits happen in Python.
                "busy_timeout": 0,
                "foreign_keys": 1,
                "synchronous": synchronous,
            }
            for session in (first, second):
                connection = session.connection()
                seen = {
                    name: connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in expected
                }
                assert seen == expected
    finally:
        db.dispose()


def test_engine_is_built_lazily_and_again_after_fork(settings: Settings) -> None:
    db = Database(settings)
    assert db._engine is None, "no engine may exist before first use"
    first = db.engine
    assert db.engine is first
    db._pid = -1  # what a forked child sees: the engine belongs to another process
    assert db.engine is not first
    db.dispose()


def test_foreign_keys_are_enforced_and_cascade(database: Database) -> None:
    prompt = write_transaction(
        database, lambda s: PromptRepository(s).add(Prompt(title="t", content="c", user_id="u1"))
    )
    write_transaction(
        database,
        lambda s: EvaluationRepository(s).add(
            Evaluation(prompt_id=prompt.id, provider="echo", model="m")
        ),
    )
    write_transaction(database, lambda s: s.execute(delete(PromptModel)))
    with database.read_session() as session:
        assert session.scalar(select(func.count()).select_from(EvaluationModel)) == 0


def test_json_none_is_sql_null(database: Database) -> None:
    prompt = write_transaction(
        database, lambda s: PromptRepository(s).add(Prompt(title="t", content="c", user_id="u1"))
    )
    with database.read_session() as session:
        is_null = session.connection().exec_driver_sql(
            f"SELECT tags IS NULL FROM prompts WHERE id = '{prompt.id}'"
        )
        assert is_null.scalar() == 1


def test_slow_queries_are_logged_without_parameters(
    db_path: Path, migrated_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(copy_migrated(migrated_template, db_path), db_slow_query_ms=0)
    db = Database(settings)
    caplog.set_level(logging.WARNING, logger="autoforge.db.slow")
    with db.read_session() as session:
        session.execute(select(PromptModel).where(PromptModel.user_id == "secret-user-value"))
    db.dispose()
    slow = [r.getMessage() for r in caplog.records if r.name == "autoforge.db.slow"]
    assert any("FROM prompts" in message for message in slow)
    assert all("secret-user-value" not in message for message in slow)


def test_fast_queries_are_not_logged(
    db_path: Path, migrated_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(copy_migrated(migrated_template, db_path), db_slow_query_ms=60_000)
    db = Database(settings)
    caplog.set_level(logging.WARNING, logger="autoforge.db.slow")
    with db.read_session() as session:
        session.execute(select(PromptModel))
    db.dispose()
    assert [r for r in caplog.records if r.name == "autoforge.db.slow"] == []


def test_active_prompts_newest_first_use_the_partial_index(database: Database) -> None:
    steps = explain(database, ACTIVE_PROMPTS_NEWEST_FIRST)
    plan = render_plan(steps)
    assert "USING INDEX idx_prompts_live_user_status_created" in plan
    assert "TEMP B-TREE" not in plan


def test_db_explain_command_prints_the_plan(migrated: Settings, tmp_path: Path) -> None:
    env = {"DATABASE_URL": str(migrated.database.path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "explain", ACTIVE_PROMPTS_NEWEST_FIRST],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines() == [
        "QUERY PLAN",
        "`--SEARCH prompts USING INDEX idx_prompts_live_user_status_created "
        "(user_id=? AND status=?)",
    ]


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("", "SQL: empty statement"),
        ("SELECT 1; DROP TABLE prompts", "exactly one statement"),
        ("SELEC nothing", 'QueryError: near "SELEC": syntax error'),
    ],
)
def test_db_explain_rejects_bad_sql_clearly(
    migrated: Settings, tmp_path: Path, sql: str, problem: str
) -> None:
    env = {"DATABASE_URL": str(migrated.database.path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "explain", sql],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
