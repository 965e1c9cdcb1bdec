"""/v1/pools: every pool the platform knows, with its agents and its work."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Reader, SessionDep, SettingsDep
from qorchestra.device_status import DeviceStatus, Window
from qorchestra.store.pools import PoolOverview, pool_overview

router = APIRouter(prefix="/v1/pools", tags=["nodes"])


class QueueDepthPublic(BaseModel):
    """What waits in a device's queue (Braket's ``deviceQueueInfo``; an emulated pool's agent
    counts the tasks of the fragment in hand that have not run yet)."""

    tasks: int = Field(description="Quantum tasks in the normal queue (Braket's `>4000`: 4000).")
    priority_tasks: int = Field(description="Quantum tasks of hybrid jobs, run before those.")
    jobs: int = Field(description="Hybrid jobs waiting (Braket's `>1000`: 1000).")


class ExecutionWindowPublic(BaseModel):
    """When a device runs tasks (Braket's `properties.service.executionWindows`), in UTC."""

    day: str = Field(description="`Everyday`, `Weekdays`, `Weekend`, or `Monday` .. `Sunday`.")
    start: str = Field(description="Start, `HH:MM:SS` UTC.")
    end: str = Field(
        description="End, `HH:MM:SS` UTC; at or before `start`: the window ends the next day."
    )

    @classmethod
    def of(cls, window: Window) -> ExecutionWindowPublic:
        return cls(day=window.day, start=_clock(window.start_s), end=_clock(window.end_s))


class DevicePublic(BaseModel):
    """What the pool's device said of itself in the newest heartbeat that reported it."""

    status: str = Field(description="`ONLINE`, `OFFLINE` or `RETIRED` (Braket's deviceStatus).")
    queue: QueueDepthPublic | None = Field(description="Its queue depth; null if not read.")
    execution_windows: list[ExecutionWindowPublic] = Field(
        description="When it runs tasks; empty: always."
    )
    observed_at: datetime | None = Field(description="When the agent read all this (UTC).")

    @classmethod
    def of(cls, device: DeviceStatus) -> DevicePublic:
        return cls(
            status=device.status,
            queue=QueueDepthPublic.model_validate(device.queue) if device.queue else None,
            execution_windows=[ExecutionWindowPublic.of(w) for w in device.windows],
            observed_at=device.observed_at,
        )


def _clock(seconds: int) -> str:
    """Seconds after midnight as ``HH:MM:SS``."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
    online: bool = Field(
        description="A live agent serves it and its device takes work now (not `OFFLINE` or "
        "`RETIRED`, and within an execution window): a job that names several pools starts on "
        "the first of them that is online."
    )
    offline_reason: str | None = Field(
        description="Why it is not online (`no live node agent`, `device OFFLINE`, `outside the "
        "device's execution windows`); null when it is."
    )
    device: DevicePublic | None = Field(
        description="Its device's status, queue depth and execution windows, as its agents "
        "report them (`aws-*`: Braket's GetDevice, read every `QORCH_DEVICE_STATUS_INTERVAL_S`; "
        "`emu-*`: the emulated queue); null where no agent reports a device (local simulators)."
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
            online=pool.offline_reason is None,
            offline_reason=pool.offline_reason,
            device=DevicePublic.of(pool.device) if pool.device else None,
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
