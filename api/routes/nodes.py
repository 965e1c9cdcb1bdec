"""/v1/nodes: the node agents seen through their heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, SessionDep, SettingsDep
from api.schemas import NodePublic, NodesPublic
from qorchestra.store import repository as repo

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


@router.get("", response_model=NodesPublic, summary="List node agents")
def list_nodes(
    _reader: Reader,
    session: SessionDep,
    settings: SettingsDep,
    pool: Annotated[str | None, Query(description="Only agents of this pool.")] = None,
) -> NodesPublic:
    """Agents with their pool, last heartbeat and work done."""
    now = datetime.now(UTC)
    nodes = [
        NodePublic.of(n, now, settings.node_offline_after_s) for n in repo.list_nodes(session, pool)
    ]
    return NodesPublic(data=nodes, count=len(nodes))
