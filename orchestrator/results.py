"""Applying fragment results to jobs: one transaction per result, idempotent.

A fragment's values are stored once, keyed by fragment id; a duplicate, a stale failure, or a
result for a finished job changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from orchestrator import training_steps as training
from orchestrator import windows
from orchestrator.dispatch import describe, fail_fragment, redispatch, utcnow
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import (
    RESULT_FIELD,
    ResultShapeError,
    StoredFragment,
    assemble_result,
    binding_values,
)
from qorchestra.config import Settings
from qorchestra.cutting.layout import describe_run, job_layout, run_programs
from qorchestra.jobs.kinds import job_kind
from qorchestra.lifecycle import JobStatus, is_terminal
from qorchestra.store import repository as repo
from qorchestra.store import results
from qorchestra.store.models import Fragment, Job, JobEventRow
from qorchestra.training import cut as training_cut

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What applying one result did."""

    kind: str  # counted, duplicate, unknown, late, stale, retried, failed
    events: list[JobEventRow] = field(default_factory=list)
    #: The dispatch loop has work now: the transaction queued outbox messages (a retry, a
    #: training step), or the job has fragments left to write and a slot just freed up.
    dispatch: bool = False


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
    outcome = _apply_to_job(session, job, fragment, result, settings)
    windows_left = job.fragments_written < job.fragments_total
    outcome.dispatch = repo.wrote_outbox(session) or (windows_left and not is_terminal(job.status))
    return outcome


def _apply_to_job(
    session: Session, job: Job, fragment: Fragment, result: pb.FragmentResult, settings: Settings
) -> Outcome:
    """Apply a result of one of the job's fragments (both locked) that is not a duplicate."""
    if is_terminal(job.status):
        return Outcome("late")

    if result.WhichOneof("outcome") == "success":
        try:
            values = binding_values(
                result.success,
                fragment.binding_count,
                RESULT_FIELD[job.result_type],
                _observable_count(session, job, fragment),
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
        if job_kind(job.kind).stepwise:
            # Training jobs report per step and per epoch, not per fragment.
            if job.fragments_done < job.fragments_total:
                return Outcome("counted")
            return Outcome("counted", training.advance(session, job, settings))
        what, metrics = _progress(session, job, fragment)
        finished = job.fragments_done == job.fragments_total
        if finished:
            # The job's result is assembled before its last events are recorded, so neither
            # waits in the transaction for the assembly (100 ms for 16k bindings).
            session.flush()
            _assemble(session, job)
        events = [
            repo.append_event(
                session,
                job,
                "progress",
                f"{what} done on {result.node_id}",
                metrics={"duration_s": result.duration_s, **metrics},
            )
        ]
        if finished:
            events.append(_succeed(session, job))
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


def _observable_count(session: Session, job: Job, fragment: Fragment) -> int:
    """Values each binding of a fragment answers: the job's observables, or those of the cut
    subexperiment the fragment runs."""
    if job_kind(job.kind).stepwise:  # a cut model's fragments ask for their own observables
        if fragment.payload is None:
            return job.observables
        return training_cut.observable_count(fragment.payload)
    if job_kind(job.kind).stepwise or not windows.is_cut(session, job):
        return job.observables
    runs = run_programs(windows.cached_spec(session, job))
    return len(runs[fragment.program_index].observables)


def _progress(session: Session, job: Job, fragment: Fragment) -> tuple[str, dict[str, float]]:
    """What a progress event says a fragment was: 'program 0, bindings 0-15', or for a cut
    program 'program 0, subcircuit 1 (subexperiment 7 of 35), bindings 0-2' with the same
    numbers as metrics, so a watcher can follow each subcircuit."""
    if not windows.is_cut(session, job):
        return describe(fragment), {}
    spec = windows.cached_spec(session, job)
    layout = job_layout(spec)
    run = layout.runs[fragment.program_index]
    if run.subcircuit is None:
        return describe(fragment).replace(
            f"program {fragment.program_index}", f"program {run.origin}", 1
        ), {"program": float(run.origin)}
    subexperiment = fragment.program_index - layout.first_run[run.origin]
    count = len(layout.experiments[run.origin].programs)
    last = fragment.binding_offset + fragment.binding_count - 1
    what = (
        f"{describe_run(run)} (subexperiment {subexperiment + 1} of {count}), "
        f"bindings {fragment.binding_offset}-{last}"
    )
    return what, {
        "program": float(run.origin),
        "subcircuit": float(run.subcircuit),
        "subexperiment": float(subexperiment),
    }


def _assemble(session: Session, job: Job) -> None:
    """Write the result of a job whose every fragment is done."""
    if windows.is_cut(session, job):  # knitting the subexperiments' values is Python's
        stored = [
            StoredFragment(f.program_index, f.binding_offset, f.result or [])
            for f in repo.finished_fragments(session, job.id)
        ]
        job.result = assemble_result(windows.full_spec(job), stored)
    else:  # Postgres assembles it: the orchestrator never holds a whole result
        results.store_result(session, job.id)
    windows.forget(job.id)


def _succeed(session: Session, job: Job) -> JobEventRow:
    """Mark a job whose result is written SUCCEEDED, with its event."""
    message = f"{job.bindings_done} bindings in {job.fragments_total} fragments"
    logger.info("job succeeded", extra={"job_id": job.id})
    return repo.set_status(session, job, JobStatus.SUCCEEDED, message, now=utcnow())
