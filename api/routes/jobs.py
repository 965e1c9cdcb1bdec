"""/v1/jobs: submit, list, read, result, cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query

from api import admission
from api.deps import (
    HubDep,
    LimiterDep,
    ProducerDep,
    Reader,
    SandboxDep,
    SessionDep,
    SettingsDep,
    Submitter,
)
from api.schemas import JobPublic, JobResultPublic, JobsPublic
from qorchestra.cutting.layout import with_progress
from qorchestra.jobs.kinds import JOB_EXAMPLES, AnyJob, job_kind
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store import training
from qorchestra.store.events import publish_events
from qorchestra.store.models import JobEventRow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="The job's id, as returned on submission.")]


def _announce(
    events: list[JobEventRow], producer: ProducerDep, settings: SettingsDep, hub: HubDep
) -> None:
    publish_events(producer, settings, events)
    for row in events:
        hub.notify(row.job_id)


@router.post("", status_code=201, response_model=JobPublic, summary="Submit a job")
def submit_job(
    body: Annotated[AnyJob, Body(openapi_examples=JOB_EXAMPLES)],
    principal: Submitter,
    session: SessionDep,
    settings: SettingsDep,
    producer: ProducerDep,
    hub: HubDep,
    sandbox: SandboxDep,
    limiter: LimiterDep,
) -> JobPublic:
    """Validate the job and queue it; answers at once with its id. Invalid jobs get 422 and
    nothing is stored. ``kind`` picks the job: ``circuits`` (the default), ``train`` or
    ``minimize``. The tenant's quotas apply (429 with Retry-After past its rate or its
    unfinished jobs); on an ``aws-*`` pool the job needs ``max_cost_usd`` and its estimate
    must fit the cap and the tenant's budget (422 with ``estimate_usd`` otherwise)."""
    admission.screen(body, principal, settings, sandbox, limiter, session)
    prepared = job_kind(body.kind).prepare(
        body, settings, lambda dataset_id: training.load_dataset(session, dataset_id)
    )
    session.rollback()  # the lookups above must not hold a transaction open
    with session.begin():
        cost = admission.admit(session, principal, body, settings, prepared)
        job = repo.create_job(
            session,
            job_id=str(uuid.uuid4()),
            name=body.name,
            kind=body.kind,
            pool=body.pool,
            spec=body.model_dump(mode="json"),
            result_type=prepared.result_type,
            observables=prepared.observables,
            bindings_total=prepared.bindings_total,
            tenant=principal.tenant,
            cost_usd=cost,
        )
        if prepared.cut_plans:  # the cut plan, shown by GET from now on; the result keeps it
            job.result = {"cutting": prepared.cut_plans}
        events = repo.events_after(session, job.id, 0)
    _announce(list(events), producer, settings, hub)
    plans = None
    if prepared.cut_plans:  # nothing has run yet
        plans = with_progress(prepared.cut_plans, {}, prepared.binding_counts)
    return JobPublic.of(job, datetime.now(UTC), cutting=plans)


@router.get("", response_model=JobsPublic, summary="List jobs")
def list_jobs(
    principal: Reader,
    session: SessionDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Jobs to skip.")] = 0,
) -> JobsPublic:
    """The caller's tenant's jobs (an admin's: every tenant's), newest first."""
    jobs, count = repo.list_jobs(
        session,
        status=status.value if status else None,
        limit=limit,
        offset=offset,
        tenant=principal.tenant_filter,
    )
    now = datetime.now(UTC)
    return JobsPublic(data=[JobPublic.of(j, now) for j in jobs], count=count)


@router.get("/{job_id}", response_model=JobPublic, summary="Read a job")
def get_job(job_id: JobId, principal: Reader, session: SessionDep) -> JobPublic:
    """Status, progress counts, timings and, for a job whose circuits are cut, the cut plan
    with each subcircuit's progress (circuit runs done and in all)."""
    job = repo.get_job(session, job_id, principal.tenant_filter)
    plans = repo.cut_plans(session, job.id)
    if plans:
        cut = [int(key) for key in plans if key.isdigit()]
        stepwise = job_kind(job.kind).stepwise
        bindings = None if stepwise else repo.program_bindings(session, job.id, cut)
        plans = with_progress(plans, repo.fragment_runs(session, job.id), bindings)
    return JobPublic.of(job, datetime.now(UTC), cutting=plans)


@router.get("/{job_id}/result", response_model=JobResultPublic, summary="Read a job's result")
def get_result(job_id: JobId, principal: Reader, session: SessionDep) -> JobResultPublic:
    """The result of a SUCCEEDED job; 409 while it is not."""
    job = repo.get_job(session, job_id, principal.tenant_filter)
    if job.status != JobStatus.SUCCEEDED or job.result is None:
        reason = f": {job.error}" if job.error else ""
        raise HTTPException(409, f"job {job_id} is {job.status}{reason}; no result")
    return JobResultPublic(id=job.id, status=job.status, result=job.result)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job")
def cancel_job(
    job_id: JobId,
    principal: Submitter,
    session: SessionDep,
    settings: SettingsDep,
    producer: ProducerDep,
    hub: HubDep,
) -> JobPublic:
    """Stop dispatching the job's fragments and mark it CANCELLED; late results are ignored.
    A finished job answers 409."""
    with session.begin():
        job = repo.lock_job(session, job_id, principal.tenant_filter)
        event = repo.set_status(
            session, job, JobStatus.CANCELLED, "cancelled by request", now=datetime.now(UTC)
        )
    _announce([event], producer, settings, hub)
    return JobPublic.of(job, datetime.now(UTC))
