"""Paid quantum tasks (QPU pools): recording the tasks agents report, and asking the pool's
agents to cancel those nobody will use (docs/qpu.md, "Idempotent submission").

An agent reports the tasks of a fragment attempt (``FragmentSubmitted``, signed, on ``results``)
before it waits on them, then again every third of the fragment timeout while it waits. A report
counts only as a result would: signed by an enrolled credential of the fragment's pool,
answering the nonce of an attempt that was sent; its values must be Braket's. Each report of the
current attempt moves the fragment's deadline on, so a task that waits long in a device's queue
does not time its fragment out while its agent lives; when the agent dies, the reports stop, the
fragment is dispatched again, and its next dispatch carries the recorded tasks
(``orchestrator.fragments.payload``) for the next agent to resume.

Cancelling: a job that ends unfinished marks its tasks (``repository.want_task_cancels``, from
``set_status``: the API's cancel included); :func:`queue_cancels` turns the marks into
``CancelTasks`` messages on the pool's cancel topic, through the outbox.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session

from orchestrator.fragments import utcnow
from orchestrator.results import Outcome
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings
from qorchestra.lifecycle import JobStatus
from qorchestra.quantum_tasks import check_device, checked_tasks
from qorchestra.signing import Rejected, Rejection
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer, verify_node_message
from qorchestra.store.db import SessionFactory, session_scope

logger = logging.getLogger(__name__)

#: Job states in which a task still running is paid for nothing.
UNFINISHED_ENDS = frozenset(
    {JobStatus.CANCELLING.value, JobStatus.CANCELLED.value, JobStatus.FAILED.value}
)
#: Tasks whose cancel requests are queued per pass.
CANCEL_BATCH = 500


def apply_signed_submitted(
    session: Session, envelope: signed_pb2.Signed, settings: Settings
) -> Outcome:
    """Record one signed FragmentSubmitted inside the caller's transaction; Rejected, before
    anything changed, when its proof fails (signer, signature, pool or nonce); ValueError when
    its values are not Braket's."""
    report, credential = verify_node_message(session, envelope, pb.FragmentSubmitted)
    return apply_submitted(session, report, settings, credential.pool, envelope.signer)


def apply_submitted(
    session: Session,
    report: pb.FragmentSubmitted,
    settings: Settings,
    pool: str,
    signer: str = "",
) -> Outcome:
    """Record the tasks of a report whose signature verified, by a credential of ``pool``."""
    extra = {"job_id": report.job_id, "fragment_id": report.fragment_id}
    fragment = repo.lock_fragment(session, report.fragment_id)
    if fragment is None or fragment.job_id != report.job_id:
        logger.warning("task report for an unknown fragment ignored", extra=extra)
        return Outcome("unknown")
    if repo.job_pool(session, fragment.job_id) != pool:
        raise Rejected(Rejection.WRONG_POOL, signer, f"a credential of pool {pool}")
    sent = 1 <= report.attempt <= fragment.attempt
    if not (
        sent and control_plane_signer(session).answers(fragment.id, report.attempt, report.nonce)
    ):
        raise Rejected(Rejection.WRONG_NONCE, signer, f"attempt {report.attempt}")
    tasks = checked_tasks(report.tasks)
    check_device(report.device_arn, settings.aws_device_arn(pool))
    if len(report.node_id) > 200:
        raise ValueError("task report node_id longer than 200 characters")
    # The job's lock orders this with a cancel: either the cancel sees these rows, or this
    # transaction sees the job ended and marks them itself.
    job = repo.lock_job(session, fragment.job_id)
    unwanted = fragment.status != repo.FragmentStatus.DONE and (
        job.status in UNFINISHED_ENDS or fragment.status == repo.FragmentStatus.FAILED
    )
    now = utcnow()
    new = repo.record_tasks(
        session,
        fragment,
        repo.TaskReport(report.attempt, report.node_id, report.device_arn, tasks),
        now=now,
        cancel=unwanted,
    )
    current = report.attempt == fragment.attempt
    if current and fragment.status == repo.FragmentStatus.DISPATCHED and not unwanted:
        # The attempt's clock runs on its tasks: the agent is alive and waiting on them.
        deadline = now + timedelta(seconds=settings.fragment_timeout_s)
        if fragment.deadline_at is None or fragment.deadline_at < deadline:
            fragment.deadline_at = deadline
    if new:
        logger.info(
            "%d Braket tasks recorded for attempt %d (%d reported by %s)%s",
            new,
            report.attempt,
            len(tasks),
            report.node_id,
            "; the job has ended, so they will be cancelled" if unwanted else "",
            extra=extra,
        )
    return Outcome("submitted" if new else "progress")


def queue_cancels(factory: SessionFactory, settings: Settings) -> set[str]:
    """Queue a ``CancelTasks`` message (through the outbox) for every task marked for
    cancelling, one per fragment, on its pool's cancel topic; one transaction. Returns the
    pools written to (their cancel topics must exist before the relay publishes)."""
    with session_scope(factory) as session:
        rows = repo.tasks_to_cancel(session, CANCEL_BATCH)
        if not rows:
            return set()
        by_fragment: dict[tuple[str, str], pb.CancelTasks] = {}
        now = utcnow()
        for task, pool in rows:
            request = by_fragment.get((pool, task.fragment_id))
            if request is None:
                request = pb.CancelTasks(
                    job_id=task.job_id,
                    fragment_id=task.fragment_id,
                    reason="its job ended before the task was used",
                )
                by_fragment[(pool, task.fragment_id)] = request
            request.tasks.append(
                pb.QuantumTask(
                    index=task.task_index,
                    arn=task.arn,
                    client_token=task.client_token,
                    generation=task.generation,
                    status=task.status,
                )
            )
            task.cancel_sent_at = now
        for (pool, fragment_id), request in by_fragment.items():
            # No fragment id on the row: publishing it must not mark the fragment dispatched.
            repo.enqueue(
                session,
                topic=settings.cancel_topic(pool),
                key=fragment_id,
                payload=request.SerializeToString(),
                job_id=request.job_id,
            )
            logger.info(
                "cancel of %d Braket tasks queued for pool %s",
                len(request.tasks),
                pool,
                extra={"job_id": request.job_id, "fragment_id": fragment_id},
            )
        return {pool for pool, _ in by_fragment}
