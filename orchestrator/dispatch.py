"""Dispatch: planning queued jobs into fragments, the outbox relay, and re-dispatch of
fragments that were not answered in time. Each function is one database transaction."""

from __future__ import annotations

import logging

from orchestrator.fragments import fail_fragment, redispatch, utcnow
from orchestrator.runners import runner_for
from qorchestra.config import Settings
from qorchestra.kafka import Producer
from qorchestra.lifecycle import is_terminal
from qorchestra.planning import Wanting, room, share_room
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Job, JobEventRow

logger = logging.getLogger(__name__)

#: Running jobs looked at per top-up pass.
TOP_UP_JOBS = 50


def plan_next_job(factory: SessionFactory, settings: Settings) -> list[JobEventRow] | None:
    """Plan the oldest queued job: its fragments and their outbox rows, in one transaction.

    Returns the events recorded, or None when no job was queued. Running jobs that still have
    fragments to write are topped up first, within the in-flight caps.
    """
    top_up(factory, settings)
    with session_scope(factory) as session:
        job = repo.claim_queued_job(session)
        if job is None:
            return None
        return runner_for(job).begin(session, job, settings)


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
