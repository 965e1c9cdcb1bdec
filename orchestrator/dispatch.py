"""Dispatch: planning queued jobs into fragments, the outbox relay, and re-dispatch of
fragments that were not answered in time. Each function is one database transaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from orchestrator import training_steps as training
from orchestrator import windows
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.cutting.layout import cut_plans, describe_plans, plan_metrics
from qorchestra.jobs.kinds import job_kind
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus, is_terminal
from qorchestra.planning import FragmentPlan, build_fragment, room
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Fragment, Job, JobEventRow

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def plan_next_job(factory: SessionFactory, settings: Settings) -> list[JobEventRow] | None:
    """Plan the oldest queued job: its fragments and their outbox rows, in one transaction.

    Returns the events recorded, or None when no job was queued. Running jobs that still have
    fragments to write are topped up first, within the in-flight caps.
    """
    windows.top_up(factory, settings)
    with session_scope(factory) as session:
        job = repo.claim_queued_job(session)
        if job is None:
            return None
        if job_kind(job.kind).stepwise:
            return training.begin(session, job, settings)
        head = windows.cached_head(session, job)  # the spec without its bindings
        spec = head.spec
        # Backpressure: only a first window is written now; top_up writes the rest as
        # results come in (orchestrator/windows.py). fragments_total is the full count.
        job.fragments_total = windows.count_fragments(spec, settings.fragment_bindings, head.sizes)
        free = room(0, repo.in_flight(session, pool=job.pool), settings)
        written = windows.write_window(session, job, head, settings, 0, free)
        message = (
            f"{job.fragments_total} fragments of up to {settings.fragment_bindings} bindings "
            f"for pool {job.pool}; {written} dispatched now, at most "
            f"{settings.max_inflight_per_job} in flight"
        )
        plans = cut_plans(spec)
        if plans:  # the plan's numbers travel with the event (README "Cutting circuits")
            message += "; " + describe_plans(plans)
        metrics = plan_metrics(plans) if plans else None
        event = repo.set_status(
            session, job, JobStatus.RUNNING, message, now=utcnow(), metrics=metrics
        )
        logger.info(
            "job planned",
            extra={"job_id": job.id, "fragments": job.fragments_total, "dispatched": written},
        )
        return [event]


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


def fragment_key(fragment_id: str, attempt: int) -> str:
    """Kafka key of a fragment message: its id for the first attempt, ``<id>/<attempt>`` after.

    A re-dispatch must be able to land on another partition than the attempt it replaces: a
    slow but live agent keeps the partitions it holds (it heartbeats), so a message keyed like
    the first attempt would wait in line behind the very fragment it is meant to overtake, as
    would every retry after it, until the job fails. A fresh key per attempt draws a partition
    again; a broker loss resends an attempt under the key it had.
    """
    return fragment_id if attempt <= 1 else f"{fragment_id}/{attempt}"


def describe(fragment: Fragment) -> str:
    """'program 0, bindings 16-31' for messages a person reads."""
    last = fragment.binding_offset + fragment.binding_count - 1
    return f"program {fragment.program_index}, bindings {fragment.binding_offset}-{last}"


def _payload(session: Session, job: Job, fragment: Fragment) -> pb.Fragment:
    if fragment.payload is not None:  # stored at planning (training steps)
        message = pb.Fragment.FromString(fragment.payload)
        message.attempt = fragment.attempt
        message.dispatched_at.GetCurrentTime()
        return message
    head = windows.cached_head(session, job)
    plan = FragmentPlan(fragment.program_index, fragment.binding_offset, fragment.binding_count)
    [bindings] = windows.read_bindings(session, job.id, head, [plan])
    return build_fragment(
        head.spec,
        plan,
        job_id=job.id,
        fragment_id=fragment.id,
        attempt=fragment.attempt,
        bindings=bindings,
    )


def redispatch(
    session: Session, job: Job, fragment: Fragment, reason: str, settings: Settings
) -> JobEventRow:
    """Send a fragment again as its next attempt (through the outbox)."""
    fragment.attempt += 1
    fragment.status = repo.FragmentStatus.PENDING
    fragment.deadline_at = None
    job.redispatches += 1
    repo.enqueue(
        session,
        topic=settings.fragments_topic(job.pool),
        key=fragment_key(fragment.id, fragment.attempt),
        payload=_payload(session, job, fragment).SerializeToString(),
        job_id=job.id,
        fragment_id=fragment.id,
    )
    logger.warning(
        "fragment dispatched again: %s",
        reason,
        extra={"job_id": job.id, "fragment_id": fragment.id, "attempt": fragment.attempt},
    )
    return repo.append_event(
        session,
        job,
        "redispatched",
        f"{describe(fragment)} dispatched again (attempt {fragment.attempt} of "
        f"{settings.max_attempts}): {reason}",
    )


def fail_fragment(
    session: Session, job: Job, fragment: Fragment, reason: str, settings: Settings
) -> JobEventRow:
    """Give up on a fragment: dead-letter it and fail its job with a readable reason."""
    fragment.status = repo.FragmentStatus.FAILED
    fragment.error = reason
    at = Timestamp()
    at.GetCurrentTime()
    letter = pb.DeadLetter(fragment=_payload(session, job, fragment), reason=reason, at=at)
    message = f"{describe(fragment)} failed after {fragment.attempt} attempt(s): {reason}"
    event = repo.set_status(session, job, JobStatus.FAILED, message, now=utcnow())
    repo.enqueue(
        session,
        topic=settings.topic("fragments.dlq"),
        key=fragment.id,
        payload=letter.SerializeToString(),
        job_id=job.id,
    )
    logger.error("job failed: %s", message, extra={"job_id": job.id, "fragment_id": fragment.id})
    return event
