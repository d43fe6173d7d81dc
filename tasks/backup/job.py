"""The backup job: take a backup (and apply retention), or run a restore drill.

Backups live in their storage with their manifests (the catalogue), not in the database
they protect: a lost database must not take its backups' index with it. The job's
result in the ledger summarizes what it did.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core.errors import TransientError
from jobs.context import JobContext, JobOutcome
from tasks.backup.kind import BackupArguments
from tasks.backup.manifest import BackupManifest
from tasks.backup.service import create_backup, prune_backups, restore_drill

log = logging.getLogger("autoforge.jobs.backup")

# Share of the progress bar per stage of a backup.
_STAGES = {"snapshot": (0.0, 0.5), "export": (0.0, 0.5), "verify": (0.5, 0.6)}
_STAGES |= {"encode": (0.6, 0.8), "upload": (0.8, 0.99)}


def manifest_summary(manifest: BackupManifest) -> dict[str, Any]:
    return {
        "backup_id": manifest.id,
        "created_at": manifest.created_at.isoformat(),
        "schema_revision": manifest.schema_revision,
        "table_counts": manifest.table_counts,
        "stored_size_bytes": manifest.stored_size_bytes,
        "stored_sha256": manifest.stored_sha256,
        "compression": manifest.compression,
        "encrypted": manifest.encryption is not None,
        "location": manifest.stored.location,
        "verified_at": manifest.verified_at.isoformat() if manifest.verified_at else None,
    }


def run_backup_job(context: JobContext) -> JobOutcome:
    arguments = BackupArguments.model_validate(context.job.arguments)
    if arguments.mode == "drill":
        report = restore_drill(context.settings)
        result: dict[str, Any] = {
            "mode": "drill",
            "backup_id": report.backup_id,
            "ok": report.ok,
            "problems": report.problems,
            "table_counts": report.table_counts,
            "duration_s": round(report.duration_s, 3),
        }
        # A failed drill is a failed job (and shows in the ledger's metrics).
        report.raise_for_failure()
        return JobOutcome(result=result)

    last_report = 0.0

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < 1.0 or stage not in _STAGES or total <= 0:
            return
        last_report = now
        start, end = _STAGES[stage]
        try:
            context.report_progress(start + (end - start) * min(done / total, 1.0))
        except TransientError:
            log.warning("could not record the progress of job %s", context.job.id)

    manifest = create_backup(context.settings, context.db, progress=progress)
    result = {"mode": "backup", **manifest_summary(manifest)}
    if arguments.prune:
        kept, deleted = prune_backups(context.settings)
        result["pruned"] = [m.id for m in deleted]
        result["kept"] = len(kept)
    return JobOutcome(result=result)
