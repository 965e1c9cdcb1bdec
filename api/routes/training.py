"""Training jobs over REST: metrics history and prediction with a trained model."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api import admission
from api.auth import Principal
from api.deps import HubDep, LimiterDep, ProducerDep, Reader, SessionDep, SettingsDep, Submitter
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.lifecycle import JobStatus, is_terminal
from qorchestra.store import repository as repo
from qorchestra.store import training
from qorchestra.store.events import publish_events
from qorchestra.training.spec import PredictJob, PredictRequest

router = APIRouter(prefix="/v1/jobs", tags=["training"])

JobId = Annotated[str, Path(description="The id of a `train` or `minimize` job.")]


class MetricPublic(BaseModel):
    """One step or epoch of a training job."""

    kind: str = Field(description="`step`, `epoch`, or `final` (minimisation's last energy).")
    step: int = Field(description="Optimizer steps taken when it was recorded.")
    epoch: int = Field(description="Epoch it belongs to (from 1; 0 for minimisation).")
    values: dict[str, float] = Field(
        description="step: loss, grad_norm, batch_accuracy or energy; epoch: train_loss, "
        "train_accuracy, val_loss, val_accuracy."
    )


class MetricsPublic(BaseModel):
    """A training job's history, oldest first."""

    id: str = Field(description="The job's id.")
    kind: str = Field(description="`train` or `minimize`.")
    status: str = Field(description="The job's status now (metrics grow while it is RUNNING).")
    data: list[MetricPublic] = Field(description="Every recorded step and epoch, oldest first.")


class Prediction(BaseModel):
    """The predicted class of one sample and the probability of every class."""

    class_: str = Field(alias="class", description="The most probable class.")
    probabilities: dict[str, float] = Field(
        description="Class name -> probability; the probabilities sum to 1."
    )


class PredictionsPublic(BaseModel):
    """Predictions, one per sample in the request's order, and the job that computed them."""

    job_id: str = Field(description="The `predict` job whose circuits ran on the nodes.")
    predictions: list[Prediction] = Field(description="One per sample, in the request's order.")


@router.get("/{job_id}/metrics", response_model=MetricsPublic, summary="Training metrics")
def get_metrics(job_id: JobId, principal: Reader, session: SessionDep) -> MetricsPublic:
    """Every step and epoch metric recorded so far (also while the job runs)."""
    job = repo.get_job(session, job_id, principal.tenant_filter)
    rows = training.metrics_history(session, job_id)
    return MetricsPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        data=[MetricPublic(kind=r.kind, step=r.step, epoch=r.epoch, values=r.values) for r in rows],
    )


@router.post(
    "/{job_id}/predict",
    response_model=PredictionsPublic,
    response_model_by_alias=True,
    summary="Classify samples with a trained model",
)
async def predict(
    job_id: JobId,
    body: PredictRequest,
    principal: Submitter,
    session: SessionDep,
    settings: SettingsDep,
    producer: ProducerDep,
    hub: HubDep,
    limiter: LimiterDep,
) -> PredictionsPublic:
    """Runs the trained classifier's circuits for the samples on the job's pool (as a
    `predict` job) and answers with classes and probabilities. 409 unless the job is a
    SUCCEEDED `train` job; 504 if the nodes do not answer within `QORCH_PREDICT_TIMEOUT_S`."""
    await run_in_threadpool(admission.rate_limit, principal, session, settings, limiter)
    spec, tenant = await run_in_threadpool(_prediction_job, session, job_id, body, principal)
    predict_id = str(uuid.uuid4())

    def create() -> None:
        with session.begin():
            circuits = len(spec.samples) * max(1, len(spec.model["observables"]))
            cost = admission.charge_prediction(
                session, tenant, spec.pool, spec.shots, circuits, settings
            )
            job = repo.create_job(
                session,
                job_id=predict_id,
                name=f"predict with {job_id}",
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
        publish_events(producer, settings, events)

    await run_in_threadpool(create)
    wake = hub.subscribe(predict_id)
    try:
        deadline = time.monotonic() + settings.predict_timeout_s
        while True:
            job = await run_in_threadpool(_fresh_job, session, predict_id)
            if is_terminal(job["status"]):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPException(
                    504,
                    f"the nodes did not answer in {settings.predict_timeout_s:g}s; "
                    f"prediction job {predict_id} goes on",
                )
            wake.clear()
            # Woken by the job's events; the timeout bounds a missed wake-up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(1.0, remaining))
    finally:
        hub.unsubscribe(predict_id, wake)
    if job["status"] != JobStatus.SUCCEEDED.value:
        raise HTTPException(409, f"prediction job {predict_id} {job['status']}: {job['error']}")
    predictions = [Prediction.model_validate(p) for p in job["result"]["predictions"]]
    return PredictionsPublic(job_id=predict_id, predictions=predictions)


def _prediction_job(
    session: Any, job_id: str, body: PredictRequest, principal: Principal
) -> tuple[PredictJob, str]:
    with session.begin():
        job = repo.get_job(session, job_id, principal.tenant_filter)
        tenant = job.tenant
        if job.kind != "train":
            raise HTTPException(409, f"job {job_id} is a {job.kind} job; only train jobs predict")
        if job.status != JobStatus.SUCCEEDED.value or job.result is None:
            raise HTTPException(409, f"job {job_id} is {job.status}; it has no trained model yet")
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


def _fresh_job(session: Any, job_id: str) -> dict[str, Any]:
    with session.begin():
        job = repo.get_job(session, job_id)
        return {"status": job.status, "error": job.error, "result": job.result}


class CheckpointPublic(BaseModel):
    """The latest checkpoint of a training or minimisation job."""

    id: str = Field(description="The job's id.")
    step: int = Field(description="Requests issued so far (gradient and evaluation steps).")
    state: dict[str, Any] = Field(
        description="weights, optimizer state, step, epoch, batch, sample order, last_gradient."
    )
    request: dict[str, Any] | None = Field(description="The step whose circuits are out now.")


@router.get("/{job_id}/checkpoint", response_model=CheckpointPublic, summary="Latest checkpoint")
def get_checkpoint(job_id: JobId, principal: Reader, session: SessionDep) -> CheckpointPublic:
    """What a restarted orchestrator resumes from; 404 for jobs without one."""
    repo.get_job(session, job_id, principal.tenant_filter)
    row = training.checkpoint(session, job_id)
    if row is None:
        raise repo.NotFound(f"job {job_id} has no checkpoint (not a training job, or not started)")
    return CheckpointPublic(id=job_id, step=row.step, state=row.state, request=row.request)
