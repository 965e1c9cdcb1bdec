"""The pool watch: jobs whose pool has no live node agent say so, and their attempts wait.

A pool's agents are live when they are RUNNING and heartbeated within
``QORCH_NODE_OFFLINE_AFTER_S``. Once a second (with the overdue sweep) the watch
- holds the deadlines of the dispatched fragments of pools without a free live agent, so an
  attempt's clock runs only while an agent could answer it: an agent that starts late finds its
  job still running. An agent of a QPU pool that waits on the quantum tasks it reported
  (within ``QORCH_FRAGMENT_TIMEOUT_S``) is not free: the fragments queued behind its own in
  Kafka wait for it, however long the device's queue, and are not dispatched again meanwhile;
- marks each of their running jobs waiting (``jobs.waiting_since``, a ``waiting`` event), clears
  the mark when an agent is back (a ``resumed`` event), and fails a job that waited longer than
  its ``max_queue_s``;
- marks each queued job that names several pools, none of them online (a live agent whose
  device takes work), waiting, and fails it once it waited longer than its ``max_queue_s``
  (dispatch starts it, and ends the wait, as soon as one of them is online).
One transaction; several orchestrators may run it at once (jobs are locked, skip-locked).
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator.fragments import utcnow
from qorchestra.config import Settings
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import JobEventRow
from qorchestra.store.pools import online_pools
from qorchestra.waiting import (
    gave_up_on_pools_reason,
    gave_up_reason,
    no_pool_online_reason,
    resumed_reason,
    waiting_reason,
)

#: Jobs looked at per pass.
WATCH_JOBS = 200


def watch_pools(factory: SessionFactory, settings: Settings) -> list[JobEventRow]:
    """One pass of the pool watch; the events it recorded."""
    now = utcnow()
    events: list[JobEventRow] = []
    with session_scope(factory) as session:
        live_since = now - timedelta(seconds=settings.node_offline_after_s)
        agents = repo.live_agents(session, live_since)
        live = set(agents)
        busy = repo.busy_agents(
            session, live_since, now - timedelta(seconds=settings.fragment_timeout_s)
        )
        free = {pool for pool, count in agents.items() if count > busy.get(pool, 0)}
        repo.hold_deadlines(session, free, now + timedelta(seconds=settings.fragment_timeout_s))
        for job in repo.jobs_to_watch(session, live, now, WATCH_JOBS):
            if job.waiting_since is None:
                job.waiting_since = now
                events.append(
                    repo.append_event(session, job, "waiting", waiting_reason(job.pool, now))
                )
                continue
            waited = (now - job.waiting_since).total_seconds()
            if job.pool in live:
                job.waiting_since = None
                events.append(
                    repo.append_event(session, job, "resumed", resumed_reason(job.pool, waited))
                )
            elif job.max_queue_s is not None and waited > job.max_queue_s:
                job.waiting_since = None
                reason = gave_up_reason(job.pool, waited, job.max_queue_s)
                events.append(repo.set_status(session, job, JobStatus.FAILED, reason, now=now))
        online = online_pools(session, live_since, now)
        for job in repo.queued_jobs_to_watch(session, online, now, WATCH_JOBS):
            pools = job.pools or [job.pool]
            if job.waiting_since is None:
                job.waiting_since = now
                reason = no_pool_online_reason(pools, now)
                events.append(repo.append_event(session, job, "waiting", reason))
            elif job.max_queue_s is not None:
                waited = (now - job.waiting_since).total_seconds()
                reason = gave_up_on_pools_reason(pools, waited, job.max_queue_s)
                events.append(repo.set_status(session, job, JobStatus.FAILED, reason, now=now))
    return events
