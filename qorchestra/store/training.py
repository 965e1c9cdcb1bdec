"""Training jobs in the store, read side: a stored spec as its model, its setup (model, data,
cut plan), its checkpoint, metrics and step clock. The API reads jobs through these, and the
orchestrator's step engine (``orchestrator/training_steps.py``) builds on them."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qorchestra.config import Settings
from qorchestra.jobs.kinds import job_kind
from qorchestra.store.models import DatasetRow, JobMetric, TrainingCheckpoint
from qorchestra.training import trainer
from qorchestra.training.data import Dataset
from qorchestra.training.spec import MinimizeJob, PredictJob, TrainJob

_SPEC = TypeAdapter(TrainJob | MinimizeJob | PredictJob)


def parse_spec(spec: dict[str, Any]) -> TrainJob | MinimizeJob | PredictJob:
    """A stored spec of a training kind as its model."""
    return _SPEC.validate_python(spec)


def load_dataset(session: Session, dataset_id: str) -> Dataset | None:
    """An uploaded dataset, or None."""
    row = session.get(DatasetRow, dataset_id)
    if row is None:
        return None
    return Dataset(
        np.asarray(row.features, dtype=float),
        np.asarray(row.labels, dtype=int),
        tuple(row.feature_names),
        tuple(row.classes),
    )


def setup_for(
    session: Session, spec: TrainJob | MinimizeJob | PredictJob, settings: Settings
) -> trainer.Setup:
    """The job's setup, its uploaded dataset read from the store (raises SpecError when the
    job is not valid)."""
    setup = job_kind(spec.kind).setup(spec, settings, lambda id_: load_dataset(session, id_))
    assert setup is not None  # every training kind has a model
    return setup


def step_seconds(session: Session, job_id: str) -> float:
    """Wall time since the step in flight was planned, read in the transaction that counts its
    last fragment.

    The checkpoint is written in the transaction that plans a step (``updated_at`` is the
    database's ``now()`` there), so the start survives an orchestrator restart, and both ends
    come from the database's clock whichever host the orchestrator runs on.
    """
    seconds = session.execute(
        select(func.extract("epoch", func.now() - TrainingCheckpoint.updated_at)).where(
            TrainingCheckpoint.job_id == job_id
        )
    ).scalar_one()
    return max(0.0, float(seconds))


def checkpoint(session: Session, job_id: str) -> TrainingCheckpoint | None:
    """A job's latest checkpoint, if it has one."""
    return session.get(TrainingCheckpoint, job_id)


def metrics_history(session: Session, job_id: str) -> list[JobMetric]:
    """A job's metrics in the order they were recorded."""
    return list(
        session.execute(
            select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.id)
        ).scalars()
    )
