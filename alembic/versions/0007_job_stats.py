"""Job statistics kept by triggers on ``jobs`` (``job_stats``), for metrics.

Counters that never fall when finished rows are pruned, histograms recorded at the
moment a job starts or ends, and the current number of jobs by kind and status kept
incrementally, so that a metrics scrape reads a few rows instead of scanning ``jobs``.
The triggers run inside the writer's own transaction: a change of the ledger and its
statistics commit or roll back together, whoever writes (API, worker, sweeper, CLI).

Rows of ``job_stats`` (``name``, ``kind``, ``status``, ``le`` -> ``value``):

- ``jobs``: jobs now in the ledger by kind and status (+1 insert, -1/+1 status change,
  -1 delete);
- ``entered``: times a job entered a status (an insert enters ``queued``);
- ``retries``: automatic retries (``running`` -> ``queued``);
- ``lease_lapses``: a running job taken over by a new attempt after its lease lapsed;
- ``duration_bucket`` / ``duration_sum``: first start to end, recorded when a job that
  started reaches a final status; one row per bucket (not cumulative), ``le`` its bound;
- ``start_delay_bucket`` / ``start_delay_sum``: from the moment a queued job became
  runnable (accepted, or its retry delay over) to its start.

Times are the application's own timestamps (``updated_at``, ``started_at``,
``finished_at``), never the database server's clock.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bucket upper bounds in seconds, frozen with this revision. Jobs run from milliseconds
# (canary) to an hour (evaluation, backup); a queued job should start within seconds.
DURATION_BOUNDS = ("0.1", "0.5", "1", "5", "10", "30", "60", "300", "600", "1800", "3600", "7200")
START_DELAY_BOUNDS = (
    "0.01",
    "0.05",
    "0.1",
    "0.5",
    "1",
    "5",
    "10",
    "30",
    "60",
    "300",
    "900",
    "3600",
)
FINAL = "('succeeded', 'failed', 'cancelled')"

TRIGGERS = (
    "trg_jobs_stats_insert",
    "trg_jobs_stats_status",
    "trg_jobs_stats_lease_lapse",
    "trg_jobs_stats_delete",
)


def _bucket(seconds: str, bounds: tuple[str, ...]) -> str:
    """The (non-cumulative) bucket label of ``seconds``: its smallest bound, or +Inf."""
    cases = " ".join(f"WHEN {seconds} <= {bound} THEN '{bound}'" for bound in bounds)
    return f"CASE {cases} ELSE '+Inf' END"


def _add(name: str, kind: str, status: str, le: str, value: str, where: str = "") -> str:
    """Upsert: add ``value`` to one statistic (created at zero when missing)."""
    source = f"SELECT '{name}', {kind}, {status}, {le}, {value}"
    if where:
        source += f" WHERE {where}"
    return (
        f"INSERT INTO job_stats (name, kind, status, le, value) {source} "
        "ON CONFLICT (name, kind, status, le) DO UPDATE SET value = value + excluded.value;"
    )


def _current(sign: str, row: str) -> str:
    if sign == "+":
        return _add("jobs", f"{row}.kind", f"{row}.status", "''", "1")
    # Trigger text built from this module's constants only (NEW/OLD), never from input.
    return (
        "UPDATE job_stats SET value = value - 1 WHERE name = 'jobs' "  # noqa: S608
        f"AND kind = {row}.kind AND status = {row}.status AND le = '';"
    )


_DURATION = "max(0.0, (julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400.0)"
_FINISHED = f"NEW.status IN {FINAL} AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL"
_START_DELAY = (
    "max(0.0, (julianday(NEW.updated_at) - max(julianday(OLD.updated_at), "
    "coalesce(julianday(OLD.available_at), 0))) * 86400.0)"
)
_STARTED = "OLD.status = 'queued' AND NEW.status = 'running'"


def _trigger_sql() -> list[str]:
    on_insert = [_current("+", "NEW"), _add("entered", "NEW.kind", "NEW.status", "''", "1")]
    on_status = [
        _current("-", "OLD"),
        _current("+", "NEW"),
        _add("entered", "NEW.kind", "NEW.status", "''", "1"),
        _add(
            "retries",
            "NEW.kind",
            "''",
            "''",
            "1",
            "OLD.status = 'running' AND NEW.status = 'queued'",
        ),
        _add(
            "duration_bucket",
            "NEW.kind",
            "NEW.status",
            _bucket(_DURATION, DURATION_BOUNDS),
            "1",
            _FINISHED,
        ),
        _add("duration_sum", "NEW.kind", "NEW.status", "''", _DURATION, _FINISHED),
        _add(
            "start_delay_bucket",
            "NEW.kind",
            "''",
            _bucket(_START_DELAY, START_DELAY_BOUNDS),
            "1",
            _STARTED,
        ),
        _add("start_delay_sum", "NEW.kind", "''", "''", _START_DELAY, _STARTED),
    ]
    on_lapse = [_add("lease_lapses", "NEW.kind", "''", "''", "1")]
    on_delete = [_current("-", "OLD")]

    def body(statements: list[str]) -> str:
        return "BEGIN\n  " + "\n  ".join(statements) + "\nEND"

    return [
        f"CREATE TRIGGER trg_jobs_stats_insert AFTER INSERT ON jobs {body(on_insert)}",
        "CREATE TRIGGER trg_jobs_stats_status AFTER UPDATE OF status ON jobs "
        f"WHEN OLD.status IS NOT NEW.status {body(on_status)}",
        # A claim of a running job whose lease lapsed: same status, one more attempt.
        "CREATE TRIGGER trg_jobs_stats_lease_lapse AFTER UPDATE OF attempts ON jobs "
        "WHEN OLD.status = 'running' AND NEW.status = 'running' "
        f"AND NEW.attempts > OLD.attempts {body(on_lapse)}",
        f"CREATE TRIGGER trg_jobs_stats_delete AFTER DELETE ON jobs {body(on_delete)}",
    ]


def upgrade() -> None:
    op.create_table(
        "job_stats",
        sa.Column("name", sa.String(32), nullable=False, comment="統計名"),
        sa.Column("kind", sa.String(32), nullable=False, comment="ジョブ種別"),
        sa.Column("status", sa.String(16), nullable=False, comment="ジョブステータス"),
        sa.Column("le", sa.String(16), nullable=False, comment="ヒストグラム上限"),
        sa.Column("value", sa.Float(), nullable=False, comment="値"),
        sa.PrimaryKeyConstraint("name", "kind", "status", "le", name=op.f("pk_job_stats")),
    )
    # The jobs already in the ledger; counters and histograms start at zero.
    op.execute(
        "INSERT INTO job_stats (name, kind, status, le, value) "
        "SELECT 'jobs', kind, status, '', count(*) FROM jobs GROUP BY kind, status"
    )
    for statement in _trigger_sql():
        op.execute(statement)


def downgrade() -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("job_stats")
