"""/v1/jobs: submit, list, read, result, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from api import use_cases
from api.deps import (
    AnnouncerDep,
    LimiterDep,
    Reader,
    SandboxDep,
    SessionDep,
    SettingsDep,
    Submitter,
)
from api.schemas import JobPublic, JobResultPublic, JobsPublic
from qorchestra.jobs.kinds import JOB_EXAMPLES, AnyJob
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="The job's id, as returned on submission.")]


@router.post("", status_code=201, response_model=JobPublic, summary="Submit a job")
def submit_job(
    body: Annotated[AnyJob, Body(openapi_examples=JOB_EXAMPLES)],
    principal: Submitter,
    session: SessionDep,
    settings: SettingsDep,
    announcer: AnnouncerDep,
    sandbox: SandboxDep,
    limiter: LimiterDep,
) -> JobPublic:
    """Validate the job and queue it; answers at once with its id. Invalid jobs get 422 and
    nothing is stored. ``kind`` picks the job: ``circuits`` (the default), ``train`` or
    ``minimize``. The tenant's quotas apply (429 with Retry-After past its rate or its
    unfinished jobs); on an ``aws-*`` pool the job needs ``max_cost_usd`` and its estimate
    must fit the cap and the tenant's budget (422 with ``estimate_usd`` otherwise)."""
    submitted = use_cases.submit_job(
        session, principal, body, settings, announcer, sandbox, limiter
    )
    return JobPublic.of(submitted.job, datetime.now(UTC), cutting=submitted.cutting)


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
    job = use_cases.read_job(session, principal, job_id)
    return JobPublic.of(job, datetime.now(UTC), cutting=use_cases.cut_progress(session, job))


@router.get("/{job_id}/result", response_model=JobResultPublic, summary="Read a job's result")
def get_result(job_id: JobId, principal: Reader, session: SessionDep) -> JobResultPublic:
    """The result of a SUCCEEDED job; 409 while it is not."""
    result = use_cases.job_result(session, principal, job_id)
    return JobResultPublic(id=job_id, status=JobStatus.SUCCEEDED, result=result)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job")
def cancel_job(
    job_id: JobId,
    principal: Submitter,
    session: SessionDep,
    announcer: AnnouncerDep,
) -> JobPublic:
    """Stop dispatching the job's fragments and mark it CANCELLED; late results are ignored.
    A finished job answers 409."""
    job = use_cases.cancel_job(session, principal, job_id, announcer)
    return JobPublic.of(job, datetime.now(UTC))
