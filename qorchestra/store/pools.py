"""The pools the platform knows, with their agents and their work, as stored (read side).

A pool is known when it is declared (built in, or named in the settings), has an enrolled node
credential, has been served by an agent, or has a running job. A submission may name a pool only
when it is declared, or a node credential was ever enrolled for it, or an agent ever reported it
(``pool_presence``).

A pool is *online* when a live agent serves it and that agent's device takes work now: its
latest heartbeat did not report the device OFFLINE or RETIRED, nor outside all of its execution
windows (``pool_availability``; the local simulators report no device and are online whenever
an agent is live).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from qorchestra.device_status import DeviceStatus
from qorchestra.store.models import Fragment, Job, Node, NodeCredentialRow
from qorchestra.store.repository import FragmentStatus

#: Why a pool without a live agent is not online.
NO_LIVE_AGENT = "no live node agent"


@dataclass
class PoolOverview:
    """One pool: why it is known, its agents, and its running work."""

    name: str
    known_from: list[str] = field(default_factory=list)
    agents_live: int = 0
    agents_known: int = 0
    credentials: int = 0
    jobs_running: int = 0
    jobs_waiting: int = 0
    fragments_queued: int = 0
    fragments_in_flight: int = 0
    oldest_in_flight_at: datetime | None = None
    #: What its device said of itself in the newest heartbeat that reported it (None: no
    #: agent reported a device, as on the local simulators).
    device: DeviceStatus | None = None
    #: Why it is not online now (None: it is): no live agent, or its device takes no work.
    offline_reason: str | None = NO_LIVE_AGENT


def _live(since: datetime) -> ColumnElement[bool]:
    """Whether a node row is a live agent: RUNNING, with a heartbeat at ``since`` or later."""
    return and_(Node.state == "RUNNING", Node.last_heartbeat_at >= since)


@dataclass(frozen=True)
class PoolPresence:
    """What a submission needs to know of its pool (``pool_presence``: what the store knows;
    the API adds the pools the settings declare)."""

    #: A node credential was ever enrolled for it (revoked ones count), or an agent reported it.
    known: bool
    #: A live agent serves it: RUNNING, with a heartbeat at ``since`` or later.
    live: bool


def pool_presence(session: Session, pool: str, since: datetime) -> PoolPresence:
    """Whether ``pool`` is known from enrollment or agents, and whether a live agent serves it,
    in one query."""
    enrolled = select(NodeCredentialRow.id).where(NodeCredentialRow.pool == pool).exists()
    reported = select(Node.id).where(Node.pool == pool).exists()
    live = select(Node.id).where(Node.pool == pool, _live(since)).exists()
    known, served = session.execute(select(or_(enrolled, reported), live)).one()
    return PoolPresence(known=bool(known), live=bool(served))


def pool_overview(
    session: Session, declared: Iterable[str], now: datetime, offline_after_s: float
) -> list[PoolOverview]:
    """Every known pool, by name (``declared``: the pools the settings name). Its reads share
    one snapshot (when the session has no transaction yet), so that a heartbeat landing between
    two of them cannot make a pool's figures disagree (a device shown OFFLINE, its pool online)."""
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    pools: dict[str, PoolOverview] = {}

    def pool(name: str, source: str) -> PoolOverview:
        overview = pools.setdefault(name, PoolOverview(name))
        if source not in overview.known_from:
            overview.known_from.append(source)
        return overview

    for name in declared:
        pool(name, "settings")
    for name, count in session.execute(
        select(NodeCredentialRow.pool, func.count())
        .where(NodeCredentialRow.revoked_at.is_(None))
        .group_by(NodeCredentialRow.pool)
    ):
        pool(name, "enrolled").credentials = int(count)
    since = now - timedelta(seconds=offline_after_s)
    live = func.count().filter(_live(since))
    for name, known, alive in session.execute(
        select(Node.pool, func.count(), live).group_by(Node.pool)
    ):
        overview = pool(name, "agents")
        overview.agents_known, overview.agents_live = int(known), int(alive)
    waiting = func.count().filter(Job.waiting_since.is_not(None))
    for name, running, waits in session.execute(
        select(Job.pool, func.count(), waiting).where(Job.status == "RUNNING").group_by(Job.pool)
    ):
        overview = pool(name, "jobs")
        overview.jobs_running, overview.jobs_waiting = int(running), int(waits)
    dispatched = Fragment.status == FragmentStatus.DISPATCHED
    for name, queued, in_flight, oldest in session.execute(
        select(
            Job.pool,
            func.count().filter(Fragment.status == FragmentStatus.PENDING),
            func.count().filter(dispatched),
            func.min(Fragment.dispatched_at).filter(dispatched),
        )
        .join(Job, Job.id == Fragment.job_id)
        .where(Job.status == "RUNNING")
        .group_by(Job.pool)
    ):
        overview = pool(name, "jobs")
        overview.fragments_queued, overview.fragments_in_flight = int(queued), int(in_flight)
        overview.oldest_in_flight_at = oldest
    for name, reason in pool_availability(session, since, now).items():
        pool(name, "agents").offline_reason = reason
    for name, device in _latest_devices(session).items():
        pool(name, "agents").device = device
    return [pools[name] for name in sorted(pools)]


def pool_availability(session: Session, since: datetime, at: datetime) -> dict[str, str | None]:
    """Every pool with a live agent (heartbeat at ``since`` or later): None when it is online
    at ``at`` (one of its live agents serves a device that takes work), else why not. A pool
    that is not listed has no live agent (``NO_LIVE_AGENT``)."""
    reasons: dict[str, str | None] = {}
    for name, device in session.execute(select(Node.pool, Node.device).where(_live(since))):
        if reasons.get(name, "") is None:
            continue  # another agent of the pool serves a device that takes work
        reasons[name] = None if device is None else DeviceStatus.of(device).why_not(at)
    return reasons


def online_pools(session: Session, since: datetime, at: datetime) -> set[str]:
    """The pools online at ``at`` (``pool_availability``)."""
    return {name for name, why in pool_availability(session, since, at).items() if why is None}


def _latest_devices(session: Session) -> dict[str, DeviceStatus]:
    """Per pool, the device report of the agent that heartbeated last among those that
    report one."""
    rows = session.execute(
        select(Node.pool, Node.device)
        .where(Node.device.is_not(None))
        .order_by(Node.pool, Node.last_heartbeat_at.desc())
        .ext(distinct_on(Node.pool))
    )
    return {name: DeviceStatus.of(device) for name, device in rows}
