"""``/v1/backups``: the backup catalogue (read from the backup storage's manifests)."""

from __future__ import annotations

from fastapi import APIRouter

from api.resources import Resources
from api.schemas import BackupList, BackupOut

router = APIRouter(prefix="/v1/backups", tags=["backups"])


@router.get("")
def list_catalogue(resources: Resources) -> BackupList:
    """Every stored backup, newest first: when, how big, its checksum, schema revision,
    row counts, where it is stored and when it was last verified."""
    # Imported here: the backup library loads boto3 and the codecs, which an API process
    # needs only when someone reads the catalogue, not to start or to publish jobs.
    from tasks.backup.service import list_backups

    manifests = list_backups(resources.settings)
    return BackupList(items=[BackupOut.from_manifest(m) for m in manifests])
