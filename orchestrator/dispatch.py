"""Dispatch: planning queued jobs into fragments, the outbox relay, and re-dispatch of
fragments that were not answered in time. Each function is one database transaction.

A job that names several pools is started on the first of them that is online when it is
planned (a live agent whose device takes work: ``qorchestra.store.pools.pool_availability``),
and stays on that pool from then on: its fragments are in that pool's topic, and paid tasks
may already run for them there. While none is online, it stays QUEUED (the pool watch says
so, and fails it past its ``max_queue_s``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.orm import Session

from orchestrator.fragments import fail_fragment, redispatch, utcnow
from orchestrator.runners import runner_for
from qorchestra.config import Settings
from qorchestra.kafka import Producer
from qorchestra.lifecycle import is_terminal
from qorchestra.planning import Wanting, room, share_room
from qorchestra.pool_choice import first_online
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Job, JobEventRow
from qorchestra.store.pools import NO_LIVE_AGENT, pool_availability
from qorchestra.waiting import chosen_pool_reason, resumed_reason

logger = logging.getLogger(__name__)

#: Running jobs looked at per top-up pass.
TOP_UP_JOBS = 50


def plan_next_job(factory: SessionFactory, settings: Settings) -> list[JobEventRow] | None:
    """Plan the oldest queued job: its fragments and their outbox rows, in one transaction.

    Returns the events recorded, or None when no job could start. Running jobs that still
    have fragments to write are topped up first, within the in-flight caps. A job that names
    several pools starts on the first that is online (``start_on_pool``).
    """
    top_up(factory, settings)
    with session_scope(factory) as session:
        now = utcnow()
        availability = pool_availability(
            session, now - timedelta(seconds=settings.node_offline_after_s), now
        )
        online = {name for name, reason in availability.items() if reason is None}
        job = repo.claim_queued_job(session, online)
        if job is None:
            return None
        events = start_on_pool(session, job, availability) if job.pools else []
        return events + runner_for(job).begin(session, job, settings)


def start_on_pool(
    session: Session, job: Job, availability: Mapping[str, str | None]
) -> list[JobEventRow]:
    """Set a job that names several pools on the first of them that is online, with an event
    that says why the pools before it were passed over (and ends its wait, if it waited)."""
    assert job.pools is not None
    chosen, skipped = first_online(job.pools, availability, NO_LIVE_AGENT)
    if chosen is None:  # not reached (it was claimed because one is online): its first
        chosen = job.pools[0]
    job.pool = chosen
    events = []
    if job.waiting_since is not None:
        waited = (utcnow() - job.waiting_since).total_seconds()
        job.waiting_since = None
        events.append(repo.append_event(session, job, "resumed", resumed_reason(chosen, waited)))
    events.append(
        repo.append_event(session, job, "pool_chosen", chosen_pool_reason(chosen, skipped))
    )
    logger.info("job starts on pool %s", chosen, extra={"job_id": job.id, "skipped": skipped})
    return events


def top_up(factory: SessionFactory, settings: Settings) -> int:
    """Write the next windows of running jobs, within the in-flight caps, sharing each pool's
    free slots fairly between tenants (``share_room``); one transaction.

    Returns how many fragments were written.
    """
    written = 0
    with session_scope(factory) as session:
        by_pool: dict[str, list[Job]] = {}
        for job in repo.jobs_to_top_up(session, TOP_UP_JOBS):
            by_pool.setdefault(job.pool, []).append(job)
        for pool, jobs in by_pool.items():
            tenants = repo.in_flight_by_tenant(session, pool)
            pool_room = settings.max_inflight_per_pool - sum(tenants.values())
            wanting = [
                Wanting(
                    job.tenant,
                    tenants.get(job.tenant, 0),
                    min(
                        room(repo.in_flight(session, job_id=job.id), 0, settings),
                        job.fragments_total - job.fragments_written,
                    ),
                )
                for job in jobs
            ]
            for job, grant in zip(jobs, share_room(pool_room, wanting), strict=True):
                if grant == 0:
                    continue
                start = job.fragments_written
                written += runner_for(job).write_window(session, job, settings, grant)
                logger.debug(
                    "job topped up", extra={"job_id": job.id, "fragments": grant, "from": start}
                )
    return written


def relay_outbox(factory: SessionFactory, producer: Producer, settings: Settings) -> int:
    """Publish a batch of outbox messages; delete those the broker acknowledged.

    At-least-once: a crash after publishing and before the commit publishes them again.
    """
    with session_scope(factory) as session:
        rows = repo.pending_outbox(session, settings.relay_batch)
        if not rows:
            return 0
        deliveries = [producer.send(r.topic, r.key, r.payload) for r in rows]
        producer.wait(deliveries)
        published = [r for r, d in zip(rows, deliveries, strict=True) if d.ok]
        repo.mark_published(session, published, now=utcnow(), timeout_s=settings.fragment_timeout_s)
        if len(published) < len(rows):
            logger.warning(
                "%d of %d outbox messages not published", len(rows) - len(published), len(rows)
            )
        return len(published)


def sweep_overdue(factory: SessionFactory, settings: Settings) -> list[JobEventRow]:
    """Dispatch again the fragments whose deadline passed, or fail their job at the limit."""
    events: list[JobEventRow] = []
    with session_scope(factory) as session:
        for fragment in repo.overdue_fragments(session, now=utcnow(), limit=200):
            job = repo.lock_job(session, fragment.job_id)
            if is_terminal(job.status):
                fragment.status = repo.FragmentStatus.FAILED
                continue
            reason = f"not answered within {settings.fragment_timeout_s:g}s"
            if fragment.attempt >= settings.max_attempts:
                events.append(fail_fragment(session, job, fragment, reason, settings))
            else:
                events.append(redispatch(session, job, fragment, reason, settings))
    return events
