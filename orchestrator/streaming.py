"""Backpressure: a circuits job's fragments are written in windows as in-flight room frees up.

A job of 100,000 bindings is not planned into 6,250 fragment rows and outbox messages at once:
planning writes at most ``max_inflight_per_job`` unanswered fragments of a job and at most
``max_inflight_per_pool`` of a pool, and tops jobs up as results come in. The job's
``fragments_total`` is the full count from the start, so progress and completion are right.

The position of the next window is the number of fragment rows the job already has: planning is
deterministic (``plan_fragments``), and rows are only ever written by planning.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from itertools import islice

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.planning import FragmentPlan, build_fragment, plan_fragments
from orchestrator.spec import JobCreate
from orchestrator.store import repository as repo
from orchestrator.store.db import SessionFactory, session_scope
from orchestrator.store.models import Fragment, Job
from qorch.config import Settings

logger = logging.getLogger(__name__)

#: Unanswered fragment states: planned (in the outbox) or dispatched.
IN_FLIGHT = (repo.FragmentStatus.PENDING, repo.FragmentStatus.DISPATCHED)
#: Parsed specs kept between top-ups (a spec is immutable; parsing a huge one is the cost).
SPEC_CACHE_SIZE = 8
#: Running jobs looked at per top-up pass.
TOP_UP_JOBS = 50

#: Jobs whose cutting flag is kept (a bool each).
CUT_CACHE_SIZE = 4096

_specs: OrderedDict[str, JobCreate] = OrderedDict()
_cut: OrderedDict[str, bool] = OrderedDict()


# ---------------------------------------------------------------- pure


def count_fragments(spec: JobCreate, bindings_per_fragment: int) -> int:
    """How many fragments the whole job has."""
    return sum(1 for _ in plan_fragments(spec, bindings_per_fragment))


def window(
    spec: JobCreate, bindings_per_fragment: int, start: int, count: int
) -> list[FragmentPlan]:
    """Fragments ``start`` .. ``start + count - 1`` of the job's plan (fewer at its end)."""
    if count <= 0:
        return []
    return list(islice(plan_fragments(spec, bindings_per_fragment), start, start + count))


def room(job_in_flight: int, pool_in_flight: int, settings: Settings) -> int:
    """How many more fragments of a job may be planned now."""
    return max(
        0,
        min(
            settings.max_inflight_per_job - job_in_flight,
            settings.max_inflight_per_pool - pool_in_flight,
        ),
    )


# ---------------------------------------------------------------- with a session


def cached_spec(session: Session, job: Job) -> JobCreate:
    """The job's parsed spec, from a small cache."""
    spec = _specs.get(job.id)
    if spec is None:
        spec = JobCreate.model_validate(job.spec)
        _specs[job.id] = spec
        if len(_specs) > SPEC_CACHE_SIZE:
            _specs.popitem(last=False)
    else:
        _specs.move_to_end(job.id)
    return spec


def is_cut(session: Session, job: Job) -> bool:
    """Whether the job cuts its circuits, read without loading its (possibly huge) spec."""
    cut = _cut.get(job.id)
    if cut is None:
        value = session.execute(select(Job.spec["cutting"]).where(Job.id == job.id)).scalar()
        cut = _cut[job.id] = bool(value)
        if len(_cut) > CUT_CACHE_SIZE:
            _cut.popitem(last=False)
    return cut


def forget(job_id: str) -> None:
    """Drop what is cached for a job (it ended)."""
    _specs.pop(job_id, None)
    _cut.pop(job_id, None)


def in_flight(session: Session, *, job_id: str | None = None, pool: str | None = None) -> int:
    """Unanswered fragments of one job, or of the running jobs of one pool."""
    query = select(func.count()).select_from(Fragment).where(Fragment.status.in_(IN_FLIGHT))
    if job_id is not None:
        query = query.where(Fragment.job_id == job_id)
    if pool is not None:
        query = query.join(Job, Job.id == Fragment.job_id).where(
            Job.pool == pool, Job.status == "RUNNING"
        )
    return int(session.execute(query).scalar_one())


def planned_count(session: Session, job_id: str) -> int:
    """Fragment rows the job has (the position of its next window)."""
    return int(
        session.execute(
            select(func.count()).select_from(Fragment).where(Fragment.job_id == job_id)
        ).scalar_one()
    )


def write_window(
    session: Session, job: Job, spec: JobCreate, settings: Settings, start: int, count: int
) -> int:
    """Write fragments ``start`` .. of the job, with their outbox rows; returns how many."""
    plans = window(spec, settings.fragment_bindings, start, count)
    if not plans:
        return 0
    fragments = [
        repo.NewFragment(
            id=fid,
            program_index=plan.program_index,
            binding_offset=plan.binding_offset,
            binding_count=plan.binding_count,
            payload=build_fragment(
                spec, plan, job_id=job.id, fragment_id=fid, attempt=1
            ).SerializeToString(),
        )
        for plan in plans
        for fid in [str(uuid.uuid4())]
    ]
    total = job.fragments_total
    repo.add_fragments(session, job, fragments, settings.fragments_topic(job.pool))
    job.fragments_total = total  # add_fragments counts what it wrote; the total is fixed
    return len(fragments)


def _streaming_jobs(session: Session, limit: int) -> Sequence[Job]:
    """Running circuits jobs that still have fragments to write, oldest first, locked."""
    written = (
        select(func.count())
        .select_from(Fragment)
        .where(Fragment.job_id == Job.id)
        .correlate(Job)
        .scalar_subquery()
    )
    return list(
        session.execute(
            select(Job)
            .where(Job.status == "RUNNING", Job.kind == "circuits", Job.fragments_total > written)
            .order_by(Job.started_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def top_up(factory: SessionFactory, settings: Settings) -> int:
    """Write the next windows of running jobs, within the in-flight caps; one transaction.

    Returns how many fragments were written.
    """
    written = 0
    with session_scope(factory) as session:
        pool_room: dict[str, int] = {}
        for job in _streaming_jobs(session, TOP_UP_JOBS):
            if job.pool not in pool_room:
                pool_room[job.pool] = in_flight(session, pool=job.pool)
            free = room(in_flight(session, job_id=job.id), pool_room[job.pool], settings)
            if free == 0:
                continue
            start = planned_count(session, job.id)
            count = write_window(session, job, cached_spec(session, job), settings, start, free)
            pool_room[job.pool] += count
            written += count
            logger.debug(
                "job topped up", extra={"job_id": job.id, "fragments": count, "from": start}
            )
    return written
