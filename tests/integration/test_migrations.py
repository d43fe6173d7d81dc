"""Alembic migrations on real libSQL files: round trips, the legacy data migration,
batch rebuilds that keep every row, the named CHECK constraints and the partial indexes.

Every database is a fresh file under ``tmp_path``, migrated through :mod:`db.migrations`
and read through :func:`db.engine.create_db_engine` or a raw ``libsql`` connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import libsql
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from core.settings import Settings
from db import migrations
from db.engine import create_db_engine
from db.errors import CheckViolation
from db.models import Base
from tests.conftest import copy_migrated, make_settings

pytestmark = [
    pytest.mark.integration,
]

HEAD = "0011"
APP_TABLES = frozenset({"prompt_templates", "prompts", "evaluations", "test_results"})
# Revision 0004 adds the job ledger, 0007 its statistics, 0009 the embeddings with their
# vector index (libSQL's shadow tables) and the full-text index (FTS5's shadow tables),
# 0010 the replica syncs, 0011 remakes the vector index.
SEARCH_TABLES = {"prompt_embeddings", "idx_prompt_embeddings_vector_shadow"}
SEARCH_TABLES |= {"libsql_vector_meta_shadow", "prompts_fts"}
SEARCH_TABLES |= {f"prompts_fts_{part}" for part in ("data", "idx", "content", "docsize", "config")}
HEAD_TABLES = APP_TABLES | {"jobs", "canary_effects", "job_stats", "replica_syncs"} | SEARCH_TABLES
T0 = "2025-01-01 00:00:00.000000"  # how UTCDateTime stores a timestamp (naive UTC text)

LIVE_QUERY = (
    "SELECT id FROM prompts WHERE user_id = 'u1' AND status = 'active' "
    "AND deleted_at IS NULL ORDER BY created_at DESC"
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """Migrated from base by this test (not a copy of the session's migrated file): here
    the migrations are what is tested."""
    migrations.upgrade(settings)
    return settings


# --------------------------------------------------------------------------- helpers


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def _execute(settings: Settings, *statements: str) -> None:
    """Run raw SQL statements in one transaction through the project's engine."""
    with _engine(settings) as engine, engine.connect() as conn, conn.begin():
        for statement in statements:
            conn.exec_driver_sql(statement)


def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with _engine(settings) as engine, engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql).all()]


def _raw_rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from a raw libSQL connection (no engine hooks, no pool)."""
    conn = libsql.connect(str(db_path))
    try:
        return [tuple(row) for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def _tables(db_path: Path) -> set[str]:
    return {
        str(name)
        for (name,) in _raw_rows(
            db_path,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
    }


def _ids(settings: Settings) -> dict[str, set[str]]:
    return {
        table: {str(row[0]) for row in _rows(settings, f"SELECT id FROM {table}")}
        for table in sorted(APP_TABLES)
    }


def _structure(db_path: Path) -> dict[str, Any]:
    """Columns, foreign keys and indexes of every table and index, as SQLite reports them,
    and the SQL of every trigger.

    The ``sql`` text of tables and indexes is left out (batch rebuilds reformat it), and so
    are foreign-key ids (batch rebuilds emit foreign keys in no fixed order). A trigger's
    text is the migration's own.
    """
    pragmas = {
        "table": (
            'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid',
            'SELECT "table", "from", "to", on_update, on_delete, match '
            "FROM pragma_foreign_key_list(?) ORDER BY 1, 2",
            'SELECT name, "unique", origin, partial FROM pragma_index_list(?) ORDER BY name',
        ),
        "index": ("SELECT * FROM pragma_index_xinfo(?) ORDER BY seqno",),
        "trigger": ("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",),
    }
    conn = libsql.connect(str(db_path))
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        return {
            str(name): (
                str(table),
                *(
                    [tuple(row) for row in conn.execute(sql, (name,)).fetchall()]
                    for sql in pragmas[kind]
                ),
            )
            for kind, name, table in objects
        }
    finally:
        conn.close()


def _prompt(
    prompt_id: str,
    status: str = "draft",
    *,
    user_id: str = "u1",
    version: int = 1,
    parent_id: str | None = None,
    template_id: str | None = None,
    deleted_at: str | None = None,
) -> str:
    def lit(value: str | None) -> str:
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    return (
        "INSERT INTO prompts (id, title, content, user_id, status, version, parent_id, "
        "template_id, created_at, updated_at, deleted_at) VALUES ("
        f"{lit(prompt_id)}, 'title', 'content', {lit(user_id)}, {lit(status)}, {version}, "
        f"{lit(parent_id)}, {lit(template_id)}, '{T0}', '{T0}', {lit(deleted_at)})"
    )


def _evaluation(
    evaluation_id: str,
    prompt_id: str,
    status: str = "pending",
    overall_score: float | None = None,
    error_message: str | None = None,
) -> str:
    score = "NULL" if overall_score is None else repr(overall_score)
    message = "NULL" if error_message is None else f"'{error_message}'"
    return (
        "INSERT INTO evaluations (id, prompt_id, status, provider, model, overall_score, "
        "error_message, created_at, updated_at) VALUES ("
        f"'{evaluation_id}', '{prompt_id}', '{status}', 'openai', 'gpt-4o', {score}, "
        f"{message}, '{T0}', '{T0}')"
    )


def _test_result(
    result_id: str, evaluation_id: str, score: float = 0.5, passed: int = 1, case: str = ""
) -> str:
    return (
        "INSERT INTO test_results (id, evaluation_id, test_case_name, score, passed, "
        f"created_at) VALUES ('{result_id}', '{evaluation_id}', '{case or result_id}', "
        f"{score!r}, {passed}, '{T0}')"
    )


def _template(template_id: str) -> str:
    return (
        "INSERT INTO prompt_templates (id, name, content, created_at, updated_at) "
        f"VALUES ('{template_id}', 'name', 'content', '{T0}', '{T0}')"
    )


def _query_plan(settings: Settings, sql: str) -> str:
    rows = _rows(settings, f"EXPLAIN QUERY PLAN {sql}")
    return "\n".join(str(row[3]) for row in rows)


# --------------------------------------------------------------------------- 1. round trip


def test_upgrade_downgrade_upgrade_round_trip(settings: Settings, db_path: Path) -> None:
    assert migrations.head_revision(settings) == HEAD
    assert migrations.current_revision(settings) is None

    migrations.upgrade(settings)
    assert migrations.current_revision(settings) == HEAD
    assert _tables(db_path) == HEAD_TABLES | {"alembic_version"}

    migrations.downgrade(settings, "base")
    assert migrations.current_revision(settings) is None
    assert _tables(db_path) == {"alembic_version"}
    leftover_indexes = _raw_rows(
        db_path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
    )
    assert leftover_indexes == []

    migrations.upgrade(settings)
    assert migrations.current_revision(settings) == HEAD
    assert _tables(db_path) == HEAD_TABLES | {"alembic_version"}  # no _alembic_tmp_* left over


def test_each_revision_step_is_reversible(settings: Settings, db_path: Path) -> None:
    """Stepping up one revision at a time, then down, names each revision in turn."""
    for revision in ("0001", "0002", "0003"):
        migrations.upgrade(settings, revision)
        assert migrations.current_revision(settings) == revision
        assert _tables(db_path) == APP_TABLES | {"alembic_version"}
    for revision in ("0002", "0001"):
        migrations.downgrade(settings, revision)
        assert migrations.current_revision(settings) == revision
        assert _tables(db_path) == APP_TABLES | {"alembic_version"}
    migrations.downgrade(settings, "base")
    assert _tables(db_path) == {"alembic_version"}


# --------------------------------------------------------------------------- 2. autogenerate


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param((("up", "head"),), id="fresh-head"),
        pytest.param((("up", "head"), ("down", "base"), ("up", "head")), id="via-base"),
        pytest.param((("up", "head"), ("down", "0002"), ("up", "head")), id="via-0002"),
    ],
)
def test_models_match_migrated_schema(
    settings: Settings, steps: tuple[tuple[str, str], ...]
) -> None:
    for direction, revision in steps:
        if direction == "up":
            migrations.upgrade(settings, revision)
        else:
            migrations.downgrade(settings, revision)
    with _engine(settings) as engine, engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": migrations.include_name})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff!r}"


# --------------------------------------------------------------------------- 3. legacy data

# id -> (legacy status, status after 0002); mappings as 0002_normalize_legacy_statuses defines
LEGACY_PROMPTS = {
    "p-draft": ("Draft", "draft"),
    "p-published": ("published", "active"),
    "p-active": ("ACTIVE", "active"),
    "p-weird": ("weird", "archived"),
    "p-live": (" live ", "active"),
    "p-enabled": ("Enabled", "active"),
    "p-new": ("new", "draft"),
    "p-empty": ("", "draft"),
    "p-archived": ("archived", "archived"),
}

# id -> (legacy status, legacy error_message, status after, error_message after)
LEGACY_EVALUATIONS = {
    "e-pending": ("Pending", None, "pending", None),
    "e-done": ("done", None, "completed", None),
    "e-error": ("error", None, "failed", None),
    "e-canceled": ("canceled", None, "cancelled", None),
    "e-mystery": ("mystery", None, "failed", "legacy status 'mystery' normalized to failed"),
    "e-mystery-msg": ("mystery", "boom", "failed", "boom"),  # an existing message is kept
    "e-running": ("IN_PROGRESS", None, "running", None),
    "e-completed": ("completed", None, "completed", None),
}

# id -> (legacy overall_score, overall_score after)
LEGACY_OVERALL_SCORES = {
    "e-pending": (85.0, 0.85),  # percentage: rescaled
    "e-done": (-0.2, 0.0),  # negative: clamped to 0
    "e-error": (250.0, 1.0),  # above 100: clamped to 1
    "e-canceled": (100.0, 1.0),
    "e-mystery": (None, None),
    "e-mystery-msg": (0.5, 0.5),
    "e-running": (1.0, 1.0),
    "e-completed": (0.0, 0.0),
}

# id -> (legacy score, legacy passed, score after, passed after)
LEGACY_TEST_RESULTS = {
    "r-150": (150.0, 5, 1.0, 1),
    "r-42": (42.0, 0, 0.42, 0),
    "r-negative": (-3.0, -1, 0.0, 0),
    "r-ok": (0.75, 1, 0.75, 1),
    "r-huge": (1000.0, 2, 1.0, 1),
}


def test_legacy_statuses_and_scores_are_normalized(settings: Settings) -> None:
    migrations.upgrade(settings, "0001")
    statements = [_prompt(pid, status) for pid, (status, _) in LEGACY_PROMPTS.items()]
    statements += [
        _evaluation(eid, "p-draft", status, LEGACY_OVERALL_SCORES[eid][0], message)
        for eid, (status, message, _, _) in LEGACY_EVALUATIONS.items()
    ]
    statements += [
        _test_result(rid, "e-done", score, passed)
        for rid, (score, passed, _, _) in LEGACY_TEST_RESULTS.items()
    ]
    _execute(settings, *statements)

    migrations.upgrade(settings)
    assert migrations.current_revision(settings) == HEAD

    prompts = dict(_rows(settings, "SELECT id, status FROM prompts"))
    assert prompts == {pid: after for pid, (_, after) in LEGACY_PROMPTS.items()}

    evaluations = {
        row[0]: row[1:]
        for row in _rows(
            settings, "SELECT id, status, error_message, overall_score FROM evaluations"
        )
    }
    assert evaluations == {
        eid: (status, message, LEGACY_OVERALL_SCORES[eid][1])
        for eid, (_, _, status, message) in LEGACY_EVALUATIONS.items()
    }

    results = {
        row[0]: row[1:] for row in _rows(settings, "SELECT id, score, passed FROM test_results")
    }
    assert results == {
        rid: (score, passed) for rid, (_, _, score, passed) in LEGACY_TEST_RESULTS.items()
    }


# --------------------------------------------------------------------------- 4. no cascades


def test_batch_rebuilds_keep_every_row(settings: Settings) -> None:
    migrations.upgrade(settings, "0001")
    _execute(
        settings,
        _template("t1"),
        _prompt("p1", "Draft", template_id="t1"),
        _prompt("p2", "published", parent_id="p1"),
        _evaluation("e1", "p1", "done", 0.9),
        _evaluation("e2", "p2", "Pending"),
        _test_result("r1", "e1"),
        _test_result("r2", "e1"),
        _test_result("r3", "e2"),
    )
    migrations.upgrade(settings, "0002")
    _execute(
        settings,
        _prompt("p3", "active", parent_id="p2", template_id="t1"),
        _prompt("p4", "archived", deleted_at=T0),
        _evaluation("e3", "p3", "running"),
        _evaluation("e4", "p4", "failed", 0.1),
        _test_result("r4", "e3"),
        _test_result("r5", "e4", 0.0, 0),
    )
    before = _ids(settings)
    assert {table: len(ids) for table, ids in before.items()} == {
        "evaluations": 4,
        "prompt_templates": 1,
        "prompts": 4,
        "test_results": 5,
    }

    migrations.upgrade(settings)

    assert migrations.current_revision(settings) == HEAD
    assert _ids(settings) == before
    assert _rows(settings, "PRAGMA foreign_key_check") == []
    # References survive the rebuilds, actions included.
    assert sorted(_rows(settings, "SELECT id, parent_id, template_id FROM prompts")) == [
        ("p1", None, "t1"),
        ("p2", "p1", None),
        ("p3", "p2", "t1"),
        ("p4", None, None),
    ]
    foreign_keys = {
        (table, str(row[3]), str(row[2]), str(row[6]))
        for table in sorted(APP_TABLES)
        for row in _rows(settings, f"SELECT * FROM pragma_foreign_key_list('{table}')")
    }
    assert foreign_keys == {
        ("prompts", "parent_id", "prompts", "NO ACTION"),
        ("prompts", "template_id", "prompt_templates", "SET NULL"),
        ("evaluations", "prompt_id", "prompts", "CASCADE"),
        ("test_results", "evaluation_id", "evaluations", "CASCADE"),
    }

    # The engine enforces them (foreign_keys=ON): deleting a prompt now cascades on purpose.
    _execute(settings, "DELETE FROM prompts WHERE id = 'p4'")
    after = _ids(settings)
    assert after["evaluations"] == before["evaluations"] - {"e4"}
    assert after["test_results"] == before["test_results"] - {"r5"}


# --------------------------------------------------------------------------- 5. CHECKs at head


def _insert_in_transaction(engine: Engine, statement: str) -> None:
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(statement)


@pytest.mark.parametrize(
    ("constraint", "statement"),
    [
        pytest.param("ck_prompts_status", _prompt("p-bad", "bogus"), id="prompt-status"),
        pytest.param("ck_prompts_version", _prompt("p-bad", version=0), id="prompt-version"),
        pytest.param(
            "ck_evaluations_status", _evaluation("e-bad", "p1", "bogus"), id="eval-status"
        ),
        pytest.param(
            "ck_evaluations_overall_score",
            _evaluation("e-bad", "p1", overall_score=1.5),
            id="eval-score-high",
        ),
        pytest.param(
            "ck_evaluations_overall_score",
            _evaluation("e-bad", "p1", overall_score=-0.1),
            id="eval-score-low",
        ),
        pytest.param(
            "ck_test_results_score", _test_result("r-bad", "e1", 2.0), id="result-score-high"
        ),
        pytest.param(
            "ck_test_results_score", _test_result("r-bad", "e1", -0.5), id="result-score-low"
        ),
        pytest.param(
            "ck_test_results_passed", _test_result("r-bad", "e1", 0.5, 2), id="result-passed"
        ),
    ],
)
def test_named_check_constraints_reject_bad_rows(
    migrated: Settings, constraint: str, statement: str
) -> None:
    _execute(migrated, _prompt("p1", "active"), _evaluation("e1", "p1"), _test_result("r1", "e1"))
    with _engine(migrated) as engine:
        with pytest.raises(CheckViolation, match=constraint) as caught:
            _insert_in_transaction(engine, statement)
        assert caught.value.constraint == constraint
    assert _ids(migrated) == {
        "evaluations": {"e1"},
        "prompt_templates": set(),
        "prompts": {"p1"},
        "test_results": {"r1"},
    }


def test_boundary_values_pass_the_checks(migrated: Settings) -> None:
    _execute(
        migrated,
        *(_prompt(f"p-{status}", status) for status in ("draft", "active", "archived")),
        *(
            _evaluation(f"e-{status}", "p-draft", status, score)
            for status, score in (
                ("pending", None),
                ("running", 0.0),
                ("completed", 1.0),
                ("failed", 0.5),
                ("cancelled", None),
            )
        ),
        _test_result("r-0", "e-pending", 0.0, 0),
        _test_result("r-1", "e-pending", 1.0, 1),
    )
    assert len(_ids(migrated)["evaluations"]) == 5


def test_a_copy_of_the_migrated_template_is_the_migrated_database(
    migrated_template: Path, settings: Settings, db_path: Path, tmp_path: Path
) -> None:
    """What the other tests get as a migrated database is a whole libSQL database, the
    same as one migrated from base."""
    copy = make_settings(copy_migrated(migrated_template, tmp_path / "copy" / "copied.db"))
    migrations.upgrade(settings)

    assert copy.database.path is not None
    assert _structure(copy.database.path) == _structure(db_path)
    assert _raw_rows(copy.database.path, "PRAGMA integrity_check") == [("ok",)]
    assert migrations.current_revision(copy) == HEAD
    _execute(copy, _prompt("p1", "active"), _evaluation("e1", "p1"))
    assert _ids(copy)["evaluations"] == {"e1"}
    assert _rows(copy, "PRAGMA journal_mode") == [("wal",)]


# --------------------------------------------------------------------------- 6. downgrade


def test_downgrade_to_0002_drops_constraints_and_keeps_data(
    migrated: Settings, db_path: Path, tmp_path: Path
) -> None:
    _execute(
        migrated,
        _template("t1"),
        _prompt("p1", "active", template_id="t1"),
        _prompt("p2", "draft", parent_id="p1"),
        _evaluation("e1", "p1", "completed", 0.8),
        _test_result("r1", "e1", 0.8, 1),
    )
    before = _ids(migrated)

    migrations.downgrade(migrated, "0002")

    assert migrations.current_revision(migrated) == "0002"
    assert _ids(migrated) == before
    assert _rows(migrated, "PRAGMA foreign_key_check") == []

    # Each rule of 0003 is gone: these rows all break one.
    _execute(
        migrated,
        _prompt("p-bogus", "bogus", version=0),
        _evaluation("e-bogus", "p1", "bogus", 42.0),
        _test_result("r-bogus", "e1", 150.0, 5),
        _test_result("r-duplicate", "e1", 0.1, 0, case="r1"),  # same case name as r1
    )
    assert dict(_rows(migrated, "SELECT id, status FROM prompts"))["p-bogus"] == "bogus"

    # The schema is 0002's again (partial indexes gone, old index back).
    fresh = make_settings(tmp_path / "fresh" / "at-0002.db")
    migrations.upgrade(fresh, "0002")
    assert fresh.database.path is not None
    assert _structure(db_path) == _structure(fresh.database.path)


# --------------------------------------------------------------------------- 7. partial index


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        pytest.param(LIVE_QUERY, "idx_prompts_live_user_status_created", id="user-status"),
        pytest.param(
            "SELECT id FROM prompts WHERE user_id = 'u1' AND deleted_at IS NULL "
            "ORDER BY created_at DESC",
            "idx_prompts_live_user_created",
            id="user",
        ),
    ],
)
def test_live_queries_use_the_partial_indexes(migrated: Settings, sql: str, index: str) -> None:
    _execute(
        migrated,
        *(
            _prompt(f"p{n}", ("draft", "active", "archived")[n % 3], user_id=f"u{n % 4}")
            for n in range(40)
        ),
        _prompt("p-deleted", "active", deleted_at=T0),
    )
    plan = _query_plan(migrated, sql)
    assert index in plan, plan
    assert "USE TEMP B-TREE" not in plan, plan


# ------------------------------------------------------------------ env.py safety net


def test_broken_foreign_keys_roll_back_the_whole_upgrade(settings: Settings, db_path: Path) -> None:
    """alembic/env.py runs ``PRAGMA foreign_key_check`` *before the one commit*.

    Alembic's SQLite impl assumes non-transactional DDL, which would commit each revision
    on its own; env.py sets ``transactional_ddl=True`` so a failed check rolls back the
    whole upgrade.
    """
    migrations.upgrade(settings, "0001")
    conn = libsql.connect(str(db_path))
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute(_prompt("p1", "Draft"))
        conn.execute(_evaluation("e-orphan", "no-such-prompt", "done"))
        conn.commit()
    finally:
        conn.close()

    with pytest.raises(RuntimeError, match="broken foreign keys"):
        migrations.upgrade(settings)

    assert migrations.current_revision(settings) == "0001", (
        "the foreign-key check ran after the migrations were committed"
    )
    assert _rows(settings, "SELECT id, status FROM prompts") == [("p1", "Draft")]
