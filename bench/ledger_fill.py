"""Fill a ledger with realistic history, fast: bulk INSERTs in big transactions.

The rows look like a ledger after weeks of use: 95% succeeded, 3% failed, 1% cancelled,
1% still queued; mostly evaluation jobs whose arguments are ~1.7 KB of test cases, some
canaries and backups. Finished jobs spread evenly over the last ``days`` days (so with
the default 30-day retention about half of them are due for pruning); queued ones are
from the last hour. They go in through the libSQL SDK, in the product's schema, with the
product's triggers keeping ``job_stats``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import libsql

BATCH_ROWS = 200_000
PROMPT_MARK = "00000000-prompt-id-000000000000000000"


def evaluation_arguments_template() -> str:
    """An evaluation run's stored arguments (~1.7 KB), with a prompt id to fill in."""
    cases = [
        {
            "name": f"case-{n:02d}",
            "variables": {
                "topic": f"report section {n}",
                "audience": "finance team",
                "tone": "formal",
            },
            "expected": f"A formal summary of section {n} for finance.",
            "scorers": ["contains", {"type": "regex", "pattern": "^[A-Z][^\\n]{10,200}$"}],
        }
        for n in range(6)
    ]
    spec = {
        "prompt_id": PROMPT_MARK,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "threshold": 0.7,
        "error_policy": "record",
        "test_cases": cases,
    }
    return json.dumps(spec)


# Rows are made by SQLite itself, in one statement per batch: through the SDK row by row
# a million rows take minutes, this way a fraction of that. Parameters: ?1 rows, ?2 days
# of history, ?3 the evaluation arguments, ?4 the mark in them replaced by the job's id.
# Each row draws its own random numbers once (the MATERIALIZED CTEs); timestamps are
# written as the product writes them (naive UTC text, six decimals).
FILL_SQL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1),
r AS MATERIALIZED (
  SELECT abs(random()) % 10000 AS s, abs(random()) % 100 AS k,
         abs(random()) % 1000000 AS u, abs(random()) % 500 AS w, abs(random()) % 30000 AS d,
         lower(hex(randomblob(16))) AS h
  FROM n
),
j AS MATERIALIZED (
  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
           || substr(h, 18, 3) || '-' || substr(h, 21, 12) AS id,
         CASE WHEN k < 85 THEN 'evaluation' WHEN k < 95 THEN 'canary' ELSE 'backup' END AS kind,
         CASE WHEN s < 9500 THEN 'succeeded' WHEN s < 9800 THEN 'failed'
              WHEN s < 9900 THEN 'cancelled' ELSE 'queued' END AS status,
         julianday('now') - (CASE WHEN s >= 9900 THEN u / 1e6 / 24 ELSE u / 1e6 * ?2 END)
           AS created,
         w / 86400000.0 AS wait, d / 86400000.0 AS run, h
  FROM r
)
INSERT INTO jobs (id, kind, status, arguments, request_hash, attempts, max_attempts, progress,
                  result, error_kind, error_message, published_at, created_at, started_at,
                  finished_at, updated_at)
SELECT id, kind, status,
  CASE kind WHEN 'evaluation' THEN replace(?3, ?4, id)
            WHEN 'canary' THEN '{"sleep_ms": 0}' ELSE '{"mode": "backup"}' END,
  h || h,
  CASE status WHEN 'failed' THEN 5 WHEN 'queued' THEN 0 ELSE 1 END,
  5,
  CASE status WHEN 'succeeded' THEN 1.0 WHEN 'queued' THEN 0.0 ELSE 0.3 END,
  CASE WHEN status != 'succeeded' THEN NULL
       WHEN kind = 'evaluation' THEN '{"overall_score": 0.82, "passed": true, "cases": 6}'
       WHEN kind = 'canary' THEN '{"slept_ms": 0, "attempts": 1}'
       ELSE '{"key": "autoforge/backups/2026/11/30/backup.db.zst", "bytes": 104857600}' END,
  CASE status WHEN 'failed' THEN 'ProviderError' END,
  CASE status WHEN 'failed' THEN 'the provider answered 500 five times' END,
  strftime('%Y-%m-%d %H:%M:%f', created) || '000',
  strftime('%Y-%m-%d %H:%M:%f', created) || '000',
  CASE WHEN status != 'queued' THEN strftime('%Y-%m-%d %H:%M:%f', created + wait) || '000' END,
  CASE WHEN status != 'queued'
       THEN strftime('%Y-%m-%d %H:%M:%f', created + wait + run) || '000' END,
  strftime('%Y-%m-%d %H:%M:%f',
           CASE WHEN status = 'queued' THEN created ELSE created + wait + run END) || '000'
FROM j ORDER BY created
"""


def append_rows(path: Path, count: int, *, days: float = 60.0) -> float:
    """Add ``count`` rows to the migrated ledger at ``path``; returns the seconds taken."""
    began = time.perf_counter()
    evaluation = evaluation_arguments_template()
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL").fetchall()
        connection.execute("PRAGMA synchronous=OFF").fetchall()
        # Random ids land all over the id index: keep it in memory while filling.
        connection.execute("PRAGMA cache_size=-1000000").fetchall()
        left = count
        while left > 0:
            batch = min(left, BATCH_ROWS)
            connection.execute("BEGIN").fetchall()
            connection.execute(FILL_SQL, (batch, days, evaluation, PROMPT_MARK)).fetchall()
            connection.execute("COMMIT").fetchall()
            left -= batch
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.close()
    return time.perf_counter() - began
