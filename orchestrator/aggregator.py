"""Applying fragment results to jobs: one transaction per result, idempotent.

A fragment's values are stored once, keyed by fragment id; a duplicate, a stale failure, or a
result for a finished job changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from orchestrator.aggregation import (
    RESULT_FIELD,
    ResultShapeError,
    StoredFragment,
    assemble_result,
    binding_values,
)
from orchestrator.cutting.jobs import run_programs
from orchestrator.dispatch import describe, fail_fragment, redispatch, utcnow
from orchestrator.lifecycle import JobStatus, is_terminal
from orchestrator.spec import JobCreate
from orchestrator.store import repository as repo
from orchestrator.store.models import Fragment, Job, JobEventRow
from orchestrator.training import runner as training
from proto.qorch.v1 import fragments_pb2 as pb
from qorch.config import Settings

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What applying one result did."""

    kind: str  # counted, duplicate, unknown, late, stale, retried, failed
    events: list[JobEventRow] = field(default_factory=list)


def apply_result(session: Session, result: pb.FragmentResult, settings: Settings) -> Outcome:
    """Apply one FragmentResult inside the caller's transaction."""
    fragment = repo.lock_fragment(session, result.fragment_id)
    if fragment is None or fragment.job_id != result.job_id:
        logger.warning(
            "result for an unknown fragment ignored",
            extra={"job_id": result.job_id, "fragment_id": result.fragment_id},
        )
        return Outcome("unknown")
    if fragment.status in (repo.FragmentStatus.DONE, repo.FragmentStatus.FAILED):
        logger.info(
            "duplicate result dropped",
            extra={"job_id": result.job_id, "fragment_id": result.fragment_id},
        )
        return Outcome("duplicate")
    job = repo.lock_job(session, fragment.job_id)
    if is_terminal(job.status):
        return Outcome("late")

    if result.WhichOneof("outcome") == "success":
        try:
            values = binding_values(
                result.success,
                fragment.binding_count,
                RESULT_FIELD[job.result_type],
                _observable_count(job, fragment.program_index),
            )
        except ResultShapeError as exc:
            failure = pb.FragmentFailure(
                error=f"malformed result from node {result.node_id}: {exc}",
                error_type="ResultShapeError",
                retryable=True,
            )
            return _apply_failure(session, job, fragment, result.attempt, failure, settings)
        fragment.status = repo.FragmentStatus.DONE
        fragment.result = values
        fragment.done_at = utcnow()
        fragment.node_id = result.node_id
        job.fragments_done += 1
        job.bindings_done += fragment.binding_count
        if job.kind in training.KINDS:
            # Training jobs report per step and per epoch, not per fragment.
            if job.fragments_done < job.fragments_total:
                return Outcome("counted")
            return Outcome("counted", training.advance(session, job, settings))
        events = [
            repo.append_event(
                session,
                job,
                "progress",
                f"{describe(fragment)} done on {result.node_id}",
                metrics={"duration_s": result.duration_s},
            )
        ]
        if job.fragments_done == job.fragments_total:
            events.append(_finish(session, job))
        return Outcome("counted", events)

    failure = result.failure
    if result.attempt < fragment.attempt:
        return Outcome("stale")  # a newer attempt is already out
    return _apply_failure(session, job, fragment, result.attempt, failure, settings)


def _apply_failure(
    session: Session,
    job: Job,
    fragment: Fragment,
    attempt: int,
    failure: pb.FragmentFailure,
    settings: Settings,
) -> Outcome:
    reason = f"{failure.error_type}: {failure.error}" if failure.error_type else failure.error
    if failure.retryable and fragment.attempt < settings.max_attempts:
        return Outcome("retried", [redispatch(session, job, fragment, reason, settings)])
    return Outcome("failed", [fail_fragment(session, job, fragment, reason, settings)])


def _observable_count(job: Job, run_index: int) -> int:
    """Values each binding of a fragment answers: the job's observables, or those of the cut
    subexperiment the fragment runs."""
    if job.kind != "circuits" or not (job.spec or {}).get("cutting"):
        return job.observables
    return len(run_programs(JobCreate.model_validate(job.spec))[run_index].observables)


def _finish(session: Session, job: Job) -> JobEventRow:
    spec = JobCreate.model_validate(job.spec)
    stored = [
        StoredFragment(f.program_index, f.binding_offset, f.result or [])
        for f in repo.finished_fragments(session, job.id)
    ]
    job.result = assemble_result(spec, stored)
    message = f"{job.bindings_done} bindings in {job.fragments_total} fragments"
    logger.info("job succeeded", extra={"job_id": job.id})
    return repo.set_status(session, job, JobStatus.SUCCEEDED, message, now=utcnow())
