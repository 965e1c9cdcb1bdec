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
from orchestrator.cutting.jobs import circuit_runs, cut_plans, with_progress
from orchestrator.lifecycle import JobStatus
from orchestrator.spec import JOB_EXAMPLES, AnyJob, JobCreate, validate_job
from orchestrator.store import repository as repo
from orchestrator.store.events import event_to_proto
from orchestrator.store.models import JobEventRow
from orchestrator.training import cut as training_cut
from orchestrator.training import runner as training

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="The job's id, as returned on submission.")]


def _announce(
    events: list[JobEventRow], producer: ProducerDep, settings: SettingsDep, hub: HubDep
) -> None:
    for row in events:
        producer.send(settings.topic("events"), row.job_id, event_to_proto(row))
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
    setup = None
    if isinstance(body, JobCreate):
        validate_job(body, settings)
        bindings = circuit_runs(body)  # a cut program counts once per subexperiment
        result_type, observables = body.result.type.value, len(body.result.observables)
        plans = cut_plans(body)
    else:
        training_cut.settle_budget(body, settings)  # stored with the spec
        setup = training.setup_for(session, body, settings)
        session.rollback()  # the lookups above must not hold a transaction open
        bindings, result_type, observables = 0, "expectation", len(setup.observables)
        plans = training.cut_plans(body, setup, settings)
    with session.begin():
        cost = admission.admit(session, principal, body, settings, setup)
        job = repo.create_job(
            session,
            job_id=str(uuid.uuid4()),
            name=body.name,
            kind=body.kind,
            pool=body.pool,
            spec=body.model_dump(mode="json"),
            result_type=result_type,
            observables=observables,
            bindings_total=bindings,
            tenant=principal.tenant,
            cost_usd=cost,
        )
        if plans:  # the cut plan, shown by GET from now on; the result keeps it
            job.result = {"cutting": plans}
        events = repo.events_after(session, job.id, 0)
    _announce(list(events), producer, settings, hub)
    if plans:  # nothing has run yet
        counts = None
        if isinstance(body, JobCreate):
            counts = {i: len(p.bindings) for i, p in enumerate(body.programs)}
        plans = with_progress(plans, {}, counts)
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
        bindings = repo.program_bindings(session, job.id, cut) if job.kind == "circuits" else None
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
