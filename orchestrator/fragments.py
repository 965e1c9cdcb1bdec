"""A fragment's message and its fate after dispatch: sent again as its next attempt, or given
up on (dead-lettered, its job failed). Shared by dispatch, the results loop and recovery."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from orchestrator import windows
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings, creates_quantum_tasks
from qorchestra.lifecycle import JobStatus
from qorchestra.planning import FragmentPlan, build_fragment
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.models import Fragment, Job, JobEventRow

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


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


def payload(session: Session, job: Job, fragment: Fragment) -> pb.Fragment:
    """The fragment's message for its current attempt, with that attempt's nonce: stored at
    planning (training steps), or built again from the job's spec and a slice of its bindings
    (circuits jobs). On a pool of quantum tasks it carries the tasks earlier attempts reported
    (the latest of each index), for the agent to resume instead of creating them again."""
    if fragment.payload is not None:  # stored at planning (training steps)
        message = pb.Fragment.FromString(fragment.payload)
        message.attempt = fragment.attempt
        message.dispatched_at.GetCurrentTime()
    else:
        head = windows.cached_head(session, job)
        plan = FragmentPlan(fragment.program_index, fragment.binding_offset, fragment.binding_count)
        [bindings] = windows.read_bindings(session, job.id, head, [plan])
        message = build_fragment(
            head.spec,
            plan,
            job_id=job.id,
            fragment_id=fragment.id,
            attempt=fragment.attempt,
            bindings=bindings,
        )
    message.nonce = control_plane_signer(session).nonce(fragment.id, fragment.attempt)
    if creates_quantum_tasks(job.pool):  # what earlier attempts created: resumed, not paid again
        message.tasks.extend(
            pb.QuantumTask(
                index=task.task_index,
                arn=task.arn,
                client_token=task.client_token,
                generation=task.generation,
                status=task.status,
            )
            for task in repo.recorded_tasks(session, fragment.id)
        )
    return message


def redispatch(
    session: Session, job: Job, fragment: Fragment, reason: str, settings: Settings
) -> JobEventRow:
    """Send a fragment again as its next attempt (through the outbox)."""
    fragment.attempt += 1
    fragment.status = repo.FragmentStatus.PENDING
    fragment.deadline_at = None
    job.redispatches += 1
    message = payload(session, job, fragment)
    repo.enqueue(
        session,
        topic=settings.fragments_topic(job.pool),
        key=fragment_key(fragment.id, fragment.attempt),
        payload=message.SerializeToString(),
        job_id=job.id,
        fragment_id=fragment.id,
    )
    logger.warning(
        "fragment dispatched again: %s%s",
        reason,
        f" (with {len(message.tasks)} recorded Braket tasks to resume)" if message.tasks else "",
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
    letter = pb.DeadLetter(fragment=payload(session, job, fragment), reason=reason, at=at)
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
