"""Training jobs over REST: metrics history and prediction with a trained model."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api import admission, use_cases
from api.deps import (
    AnnouncerDep,
    HubDep,
    LimiterDep,
    Reader,
    SessionDep,
    SettingsDep,
    Submitter,
)
from qorchestra.lifecycle import JobStatus, is_terminal
from qorchestra.training.spec import PredictRequest

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
    job, rows = use_cases.metrics_history(session, principal, job_id)
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
    announcer: AnnouncerDep,
    hub: HubDep,
    limiter: LimiterDep,
) -> PredictionsPublic:
    """Runs the trained classifier's circuits for the samples on the job's pool (as a
    `predict` job) and answers with classes and probabilities. 409 unless the job is a
    SUCCEEDED `train` job; 504 if the nodes do not answer within `QORCH_PREDICT_TIMEOUT_S`."""
    await run_in_threadpool(admission.rate_limit, principal, session, settings, limiter)
    spec, tenant = await run_in_threadpool(
        use_cases.prediction_spec, session, principal, job_id, body
    )
    predict_id = await run_in_threadpool(
        use_cases.store_prediction,
        session,
        principal,
        spec,
        job_id,
        tenant,
        settings,
        announcer,
    )
    wake = hub.subscribe(predict_id)
    try:
        deadline = time.monotonic() + settings.predict_timeout_s
        while True:
            job = await run_in_threadpool(use_cases.job_outcome, session, predict_id)
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
        raise use_cases.Conflict(f"prediction job {predict_id} {job['status']}: {job['error']}")
    predictions = [Prediction.model_validate(p) for p in job["result"]["predictions"]]
    return PredictionsPublic(job_id=predict_id, predictions=predictions)


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
    row = use_cases.latest_checkpoint(session, principal, job_id)
    return CheckpointPublic(id=job_id, step=row.step, state=row.state, request=row.request)
