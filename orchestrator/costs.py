"""What a job will cost on a paid (``aws-*``) pool: an upper bound from a price table. Pure.

Braket bills per quantum task and per shot. A circuits job runs one task per binding of every
program it runs (the subexperiments of a cut program included); with shots, an expectation
job may need one task per observable, so the bound counts one per observable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.cutting.jobs import run_programs
from orchestrator.spec import JobCreate, ResultType
from orchestrator.training.spec import MinimizeJob, TrainJob


@dataclass(frozen=True)
class Price:
    """USD per quantum task and per shot."""

    per_task: float
    per_shot: float


def is_paid(pool: str) -> bool:
    """Whether jobs on ``pool`` cost money (real devices and managed simulators)."""
    return pool.startswith("aws-")


def estimate_usd(tasks: int, shots: int, price: Price) -> float:
    """The cost of ``tasks`` tasks of ``shots`` shots each, rounded up to the cent."""
    cost = tasks * price.per_task + tasks * shots * price.per_shot
    return math.ceil(round(cost * 100, 6)) / 100


def circuits_tasks(job: JobCreate) -> int:
    """Quantum tasks of a (validated) circuits job, at most."""
    sampled = job.shots > 0 and job.result.type == ResultType.EXPECTATION
    total = 0
    for run in run_programs(job):
        bindings = max(1, len(job.programs[run.origin].bindings))
        total += bindings * (max(1, len(run.observables)) if sampled else 1)
    return total


def training_tasks(
    job: TrainJob | MinimizeJob, *, weights: int, samples: int, observables: int
) -> int:
    """Quantum tasks of a training or minimisation job run to its last step, at most.

    ``weights`` are the circuit's trainable parameters, ``samples`` the data set's rows (0 for
    a minimisation), ``observables`` the readout's Pauli strings.
    """
    per_sample = 3 if _gradient(job) == "spsa" else 1 + 2 * weights
    if isinstance(job, TrainJob):
        # every epoch: gradients over the training samples, then an evaluation of all of them
        circuits = job.training.epochs * samples * (per_sample + 1)
    else:
        circuits = (job.steps + 1) * per_sample
    return circuits * (max(1, observables) if job.shots > 0 else 1)


def _gradient(job: TrainJob | MinimizeJob) -> str:
    return job.training.gradient if isinstance(job, TrainJob) else job.gradient
