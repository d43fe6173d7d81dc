"""``/v1/replicas``: each declared replica's last sync, lag and last error."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.resources import Resources

router = APIRouter(prefix="/v1/replicas", tags=["replicas"])


@router.get("")
def list_replicas(resources: Resources) -> dict[str, Any]:
    """Every replica in ``REPLICAS``: its host and protocol, when its last successful pull
    started, how long it took and whether it changed anything, its lag (seconds since
    that pull started), whether it is stale (``REPLICA_STALE_AFTER_S``), its last error
    if newer than its last success, and its syncs by outcome. Tokens are never shown."""
    from tasks.replica_sync.status import replica_statuses

    with resources.runtime.db.read_session() as session:
        statuses = replica_statuses(session, resources.settings)
    return {"items": [status.as_dict() for status in statuses]}
