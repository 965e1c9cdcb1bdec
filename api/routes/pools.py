"""/v1/pools: every pool the platform knows, with its agents and its work."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Reader, SessionDep, SettingsDep
from qorchestra.store.pools import PoolOverview, pool_overview

router = APIRouter(prefix="/v1/pools", tags=["nodes"])


class PoolPublic(BaseModel):
    """One pool: why it is known, its node agents, and the work of its running jobs."""

    name: str = Field(description="The pool, e.g. `local-dm`; its work goes to `fragments.<name>`.")
    known_from: list[str] = Field(
        description="Why the platform knows it: `settings` (built in or configured), `enrolled` "
        "(a node credential), `agents` (an agent has served it), `jobs` (a job runs on it)."
    )
    agents_live: int = Field(
        description="Agents RUNNING with a heartbeat within `QORCH_NODE_OFFLINE_AFTER_S`; with "
        "none, its jobs wait (`waiting` on the job) and their attempts' clocks stand still."
    )
    agents_known: int = Field(description="Agents that ever served it, live or not.")
    credentials: int = Field(description="Unrevoked node credentials enrolled for it.")
    jobs_running: int = Field(description="Its RUNNING jobs.")
    jobs_waiting: int = Field(description="Of those, the ones waiting for an agent.")
    fragments_queued: int = Field(description="Fragments of its running jobs not yet sent.")
    fragments_in_flight: int = Field(description="Fragments sent and not answered yet.")
    oldest_in_flight_s: float | None = Field(
        description="Age of the oldest fragment sent and not answered (seconds); null if none."
    )

    @classmethod
    def of(cls, pool: PoolOverview, now: datetime) -> PoolPublic:
        oldest = pool.oldest_in_flight_at
        return cls(
            name=pool.name,
            known_from=pool.known_from,
            agents_live=pool.agents_live,
            agents_known=pool.agents_known,
            credentials=pool.credentials,
            jobs_running=pool.jobs_running,
            jobs_waiting=pool.jobs_waiting,
            fragments_queued=pool.fragments_queued,
            fragments_in_flight=pool.fragments_in_flight,
            oldest_in_flight_s=round((now - oldest).total_seconds(), 3) if oldest else None,
        )


class PoolsPublic(BaseModel):
    """Every known pool."""

    data: list[PoolPublic] = Field(description="The pools, by name.")
    count: int = Field(description="Pools in `data`.")


@router.get("", response_model=PoolsPublic, summary="List pools")
def list_pools(_reader: Reader, session: SessionDep, settings: SettingsDep) -> PoolsPublic:
    """Every pool the platform knows, with its live agents and the work waiting on it."""
    now = datetime.now(UTC)
    pools = pool_overview(session, settings.declared_pools(), now, settings.node_offline_after_s)
    return PoolsPublic(data=[PoolPublic.of(p, now) for p in pools], count=len(pools))
