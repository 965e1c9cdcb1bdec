"""What the API does with jobs, apart from how it is asked.

The REST routes (``api/routes/``) and the gRPC servicer (``api/grpc_server.py``) are thin:
they translate a request into one of these calls and its answer back. Errors are domain
errors (``NotFound``, ``SpecError``, :class:`Conflict`, ...), mapped to status codes in one
table per transport (``api/errors.py`` for HTTP, ``api/grpc_server.py`` for gRPC).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from api import admission
from api.auth import Principal
from api.event_hub import EventHub
from api.ratelimit import RateLimiter
from api.sandbox import ProgramSandbox
from qorchestra.config import Settings
from qorchestra.cutting.layout import with_progress
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.jobs.kinds import AnyJob, job_kind
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus
from qorchestra.signing import ControlPlaneSigner
from qorchestra.store import repository as repo
from qorchestra.store import training
from qorchestra.store.events import publish_events
from qorchestra.store.models import Job, JobEventRow
from qorchestra.training.spec import PredictJob, PredictRequest


class Conflict(Exception):
    """The job is not in a state that allows what was asked (HTTP 409)."""


@dataclass(frozen=True)
class Announcer:
    """How the API makes committed events known: on the ``events`` topic for every API
    process, and to this process's own watchers at once."""

    producer: Producer
    settings: Settings
    hub: EventHub
    signer: ControlPlaneSigner

    def announce(self, rows: Sequence[JobEventRow]) -> None:
        """Announce events whose transaction committed."""
        publish_events(self.producer, self.settings, self.signer, rows)
        for row in rows:
            self.hub.notify(row.job_id)


@dataclass(frozen=True)
class Submitted:
    """A job just stored, and its cut plans with their (empty) progress."""

    job: Job
    cutting: dict[str, Any] | None


def submit_job(
    session: Session,
    principal: Principal,
    body: AnyJob,
    settings: Settings,
    announcer: Announcer,
    sandbox: ProgramSandbox,
    limiter: RateLimiter,
) -> Submitted:
    """Screen, validate, admit and store a job, then announce it. Nothing is stored when any
    step refuses it (429, 422)."""
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
            max_queue_s=body.max_queue_s,
        )
        if prepared.cut_plans:  # the cut plan, shown by GET from now on; the result keeps it
            job.result = {"cutting": prepared.cut_plans}
        events = list(repo.events_after(session, job.id, 0))
    announcer.announce(events)
    plans = None
    if prepared.cut_plans:  # nothing has run yet
        plans = with_progress(prepared.cut_plans, {}, prepared.binding_counts)
    return Submitted(job, plans)


def read_job(session: Session, principal: Principal, job_id: str) -> Job:
    """One job of the caller's tenant (any tenant's for an admin); NotFound otherwise."""
    return repo.get_job(session, job_id, principal.tenant_filter)


def cut_progress(session: Session, job: Job) -> dict[str, Any] | None:
    """The job's cut plans with each subcircuit's progress, or None when nothing is cut."""
    plans = repo.cut_plans(session, job.id)
    if not plans:
        return None
    cut = [int(key) for key in plans if key.isdigit()]
    stepwise = job_kind(job.kind).stepwise
    bindings = None if stepwise else repo.program_bindings(session, job.id, cut)
    return with_progress(plans, repo.fragment_runs(session, job.id), bindings)


def job_result(session: Session, principal: Principal, job_id: str) -> dict[str, Any]:
    """The result of a SUCCEEDED job; Conflict while it has none."""
    job = read_job(session, principal, job_id)
    if job.status != JobStatus.SUCCEEDED or job.result is None:
        reason = f": {job.error}" if job.error else ""
        raise Conflict(f"job {job_id} is {job.status}{reason}; no result")
    result: dict[str, Any] = job.result
    return result


def cancel_job(session: Session, principal: Principal, job_id: str, announcer: Announcer) -> Job:
    """Mark the job CANCELLED (InvalidTransition once it finished) and announce it."""
    with session.begin():
        job = repo.lock_job(session, job_id, principal.tenant_filter)
        event = repo.set_status(
            session, job, JobStatus.CANCELLED, "cancelled by request", now=datetime.now(UTC)
        )
    announcer.announce([event])
    return job


def events_after(session: Session, job_id: str, after: int, limit: int) -> list[JobEventRow]:
    """Up to ``limit`` stored events of a job after seq ``after``, in order."""
    return list(repo.events_after(session, job_id, after, limit))


# ---------------------------------------------------------------- training


def metrics_history(session: Session, principal: Principal, job_id: str) -> tuple[Job, list[Any]]:
    """A job and every metric recorded for it so far, oldest first."""
    job = read_job(session, principal, job_id)
    return job, training.metrics_history(session, job_id)


def latest_checkpoint(session: Session, principal: Principal, job_id: str) -> Any:
    """A training job's latest checkpoint; NotFound for jobs without one."""
    read_job(session, principal, job_id)
    row = training.checkpoint(session, job_id)
    if row is None:
        raise repo.NotFound(f"job {job_id} has no checkpoint (not a training job, or not started)")
    return row


def prediction_spec(
    session: Session, principal: Principal, job_id: str, body: PredictRequest
) -> tuple[PredictJob, str]:
    """The ``predict`` job that classifies ``body.samples`` with the model trained by job
    ``job_id``, and the model's tenant. Conflict unless that job is a SUCCEEDED train job;
    SpecError for samples of the wrong width."""
    with session.begin():
        job = read_job(session, principal, job_id)
        tenant = job.tenant
        if job.kind != "train":
            raise Conflict(f"job {job_id} is a {job.kind} job; only train jobs predict")
        if job.status != JobStatus.SUCCEEDED.value or job.result is None:
            raise Conflict(f"job {job_id} is {job.status}; it has no trained model yet")
        result: dict[str, Any] = job.result
        pool = job.pool
        shots = int(job.spec.get("shots", 0))
    width = len(result["model"]["feature_names"])
    errors = [
        FieldError(("samples", i), f"{len(row)} features; the model was trained on {width}")
        for i, row in enumerate(body.samples)
        if len(row) != width
    ]
    if errors:
        raise SpecError(errors)
    spec = PredictJob(
        kind="predict",
        pool=pool,
        shots=shots,
        model_job_id=job_id,
        model=result["model"],
        circuit_parameters=result["circuit_parameters"],
        samples=body.samples,
    )
    return spec, tenant


def store_prediction(
    session: Session,
    principal: Principal,
    spec: PredictJob,
    model_job_id: str,
    tenant: str,
    settings: Settings,
    announcer: Announcer,
) -> str:
    """Admit (quotas, cost) and store a ``predict`` job as the model's tenant's, announce
    it; its id."""
    predict_id = str(uuid.uuid4())
    with session.begin():
        circuits = len(spec.samples) * max(1, len(spec.model["observables"]))
        cost = admission.admit_prediction(
            session, principal, tenant, spec.pool, spec.shots, circuits, settings
        )
        job = repo.create_job(
            session,
            job_id=predict_id,
            name=f"predict with {model_job_id}",
            kind="predict",
            pool=spec.pool,
            spec=spec.model_dump(mode="json"),
            result_type="expectation",
            observables=len(spec.model["observables"]),
            bindings_total=len(spec.samples),
            tenant=tenant,  # the model's tenant: the prediction is the model's child
            cost_usd=cost,
        )
        events = list(repo.events_after(session, job.id, 0))
    announcer.announce(events)
    return predict_id


def job_outcome(session: Session, job_id: str) -> dict[str, Any]:
    """Status, error and result of a job, read in a transaction of its own."""
    with session.begin():
        job = repo.get_job(session, job_id)
        return {"status": job.status, "error": job.error, "result": job.result}
