"""How the orchestrator runs a circuits job: every binding of every program, in fragments
written in windows as in-flight room frees up (``orchestrator/windows.py``), its result
assembled once the last fragment is in."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from orchestrator import windows
from orchestrator.fragments import describe, utcnow
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import Expected, StoredFragment, assemble_result, bitstring_width
from qorchestra.config import Settings
from qorchestra.cutting.layout import (
    cut_plans,
    describe_plans,
    describe_run,
    job_layout,
    plan_metrics,
    run_programs,
)
from qorchestra.lifecycle import JobStatus
from qorchestra.planning import room
from qorchestra.store import repository as repo
from qorchestra.store import results
from qorchestra.store.models import Fragment, Job, JobEventRow

logger = logging.getLogger(__name__)


class CircuitsRunner:
    """A circuits job in the orchestrator (see :class:`orchestrator.runners.JobRunner`)."""

    def begin(self, session: Session, job: Job, settings: Settings) -> list[JobEventRow]:
        """Count the job's fragments, write the first window and mark it RUNNING."""
        head = windows.cached_head(session, job)  # the spec without its bindings
        spec = head.spec
        # Backpressure: only a first window is written now; dispatch.top_up writes the rest as
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
        if plans:  # the plan's numbers travel with the event (docs/cutting.md)
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

    def write_window(self, session: Session, job: Job, settings: Settings, count: int) -> int:
        """Write the job's next ``count`` fragments (the job locked, within the caps)."""
        head = windows.cached_head(session, job)
        return windows.write_window(session, job, head, settings, job.fragments_written, count)

    def expected(self, session: Session, job: Job, fragment: Fragment) -> Expected:
        """What the fragment's result must hold: a value per binding; for expectations, one
        per observable of the job (or of the cut subexperiment the fragment runs); for counts
        and probabilities, bitstrings of the width of the program it runs, and counts summing
        to the job's shots. Read from the cached spec head, and the width from a per-program
        cache: no result parses the spec or the program again."""
        cut = windows.is_cut(session, job)
        if job.result_type == "expectation" and not cut:
            return Expected(fragment.binding_count, job.result_type, job.observables)
        spec = windows.cached_spec(session, job)
        if cut:
            run = run_programs(spec)[fragment.program_index]
            source, observables, qubits = run.source, len(run.observables), run.qubits
        else:  # the run list is the job's programs: no need to build it for every result
            source, observables, qubits = spec.programs[fragment.program_index].source, 0, 0
        if job.result_type == "expectation":
            return Expected(fragment.binding_count, job.result_type, observables, spec.shots)
        return Expected(
            fragment.binding_count,
            job.result_type,
            shots=spec.shots,
            width=bitstring_width(source, job.result_type, qubits),
        )

    def fragment_done(
        self,
        session: Session,
        job: Job,
        fragment: Fragment,
        result: pb.FragmentResult,
        settings: Settings,
    ) -> list[JobEventRow]:
        """A progress event for the fragment; the result and SUCCEEDED after the last one."""
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
        return events


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
