"""The backup kind: a consistent online backup (verified, stored, retention applied), or a
restore drill; nightly and weekly on a schedule. The logic is :mod:`tasks.backup.job`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.kind import KindSpec, Ref, Schedule


class BackupArguments(BaseModel):
    """``POST /v1/jobs/backup`` body."""

    # Strict: ``"prune": 0`` or ``"true"`` is refused, as the schema's ``boolean`` says,
    # not a guess at what was meant.
    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["backup", "drill"] = Field(
        "backup",
        description="backup: take, verify and store a backup; drill: restore the newest "
        "backup into a temporary file and check it against its manifest.",
    )
    # Off for on-demand backups: retention keeps one backup per day, so pruning would drop
    # an earlier backup of the same day (say, one taken before a migration). The nightly
    # schedule prunes.
    prune: bool = Field(
        False, description="After a backup, delete backups the retention policy does not keep."
    )


KIND = KindSpec(
    name="backup",
    queue="maintenance",
    task_name="autoforge.backup",
    arguments=BackupArguments,
    example={"mode": "backup", "prune": False},
    summary="Enqueue a backup or a restore drill",
    description="Take a consistent online backup now (verified, stored, retention "
    'applied), or with `{"mode": "drill"}` restore the newest backup into a temporary '
    "file and check it. The catalogue is at `/v1/backups`.",
    logic=Ref("tasks.backup.job:run_backup_job"),
    max_attempts=3,
    time_limit_s=3600,
    metrics=Ref("tasks.backup.metrics:BACKUP_METRICS"),
    schedules=(
        Schedule(
            name="nightly-backup",
            key="backup",
            arguments={"mode": "backup", "prune": True},
            cron_setting="backup_cron",
            period="%Y-%m-%d",
        ),
        Schedule(
            name="restore-drill",
            key="drill",
            arguments={"mode": "drill", "prune": True},
            cron_setting="restore_drill_cron",
            period="%G-W%V",
        ),
    ),
    # A backup killed along with its worker leaves a database-sized scratch folder.
    on_worker_start=Ref("tasks.backup.workdir:remove_stale_scratch"),
)
