"""/v1/jobs: submit, list, read, result, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api import use_cases
from api.auth import Principal
from api.deps import AnnouncerDep, Reader, SessionDep, Submitter
from api.schemas import CostPublic, JobPublic, JobResultPublic, JobsPublic
from qorchestra.jobs.kinds import JOB_EXAMPLES, AnyJob
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="The job's id, as returned on submission.")]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): a submission sent again with the same key "
        "and body is answered with the job the first one stored (200), never a second job. "
        "The same key with another body is a 422. Keys are kept per tenant, with the job.",
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    summary="Submit a job",
    responses={
        200: {
            "model": JobPublic,
            "description": "A repeat of an earlier submission (its `Idempotency-Key`): the job "
            "that one stored, as it is now; nothing new is stored.",
        }
    },
)
async def submit_job(
    body: Annotated[AnyJob, Body(openapi_examples=JOB_EXAMPLES)],
    principal: Submitter,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Validate the job and queue it; answers at once with its id. Invalid jobs get 422 and
    nothing is stored. ``kind`` picks the job: ``circuits`` (the default), ``train`` or
    ``minimize``. The tenant's quotas apply (429 with Retry-After past its rate or its
    unfinished jobs); on an ``aws-*`` pool the job needs ``max_cost_usd`` and its estimate
    must fit the cap and the tenant's budget (422 with ``estimate_usd`` otherwise). A pool that
    no setting declares, no node credential was enrolled for and no agent has served is a 422;
    on a pool that no live agent serves now, the job is queued and ``warnings`` says so (it
    waits until one starts). With an `Idempotency-Key`, a retried submission gets the job
    the first one stored (200)."""
    # The whole submission runs in one worker thread: a sync route with the session, settings,
    # sandbox... as dependencies would hop to a thread and back for each of them.
    state = request.app.state
    if getattr(state, "commits", None) is None:  # in the event loop: made once, without a race
        state.commits = use_cases.GroupCommit()
    job, repeated = await run_in_threadpool(_submit, state, principal, body, idempotency_key)
    if repeated:
        response.status_code = 200
    return job


def _submit(
    state: Any, principal: Principal, body: AnyJob, key: str | None
) -> tuple[JobPublic, bool]:
    """Submit ``body`` with the app's session factory, sandbox, limiter (``api/app.py`` puts
    them on ``app.state``) and batches of submissions; the answer, built in this thread, and
    whether the submission repeated an earlier one (its ``Idempotency-Key``)."""
    settings = state.settings
    announcer = use_cases.Announcer(state.producer, settings, state.hub, state.signer)
    with state.sessions() as session:
        submitted = use_cases.submit_job(
            session,
            principal,
            body,
            settings,
            announcer,
            state.sandbox,
            state.limiter,
            state.pools,
            state.commits,
            idempotency_key=key,
        )
    public = JobPublic.of(
        submitted.job, datetime.now(UTC), cutting=submitted.cutting, warnings=submitted.warnings
    )
    return public, submitted.repeated


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
    job = use_cases.job_result(session, principal, job_id)
    return JobResultPublic(
        id=job_id, status=JobStatus.SUCCEEDED, result=job.result or {}, cost=CostPublic.of(job)
    )


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
