"""The orchestrator's per-kind behaviour, in one place: how a job is begun, topped up,
checked and advanced as its fragments come in. A circuits job runs as one batch of fragments
(``orchestrator/circuits_runner.py``); the training kinds run step by step
(``orchestrator/training_steps.py``). Which one a job gets is its kind's to say
(``JobKind.stepwise`` in ``qorchestra/jobs/kinds.py``)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from orchestrator.circuits_runner import CircuitsRunner
from orchestrator.training_steps import StepRunner
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import Expected
from qorchestra.config import Settings
from qorchestra.jobs.kinds import job_kind
from qorchestra.store.models import Fragment, Job, JobEventRow


class JobRunner(Protocol):
    """What the orchestrator does with a job of one kind. Every method runs inside the
    caller's transaction, with the job's row locked."""

    def begin(self, session: Session, job: Job, settings: Settings) -> list[JobEventRow]:
        """Plan a job just claimed from the queue: its first fragments, and RUNNING."""
        ...

    def write_window(self, session: Session, job: Job, settings: Settings, count: int) -> int:
        """Write up to ``count`` more of the job's fragments; returns how many."""
        ...

    def expected(self, session: Session, job: Job, fragment: Fragment) -> Expected:
        """What the result of ``fragment`` must hold: how many bindings and values, and
        what makes each value physically possible (the shots, the bitstrings' width)."""
        ...

    def fragment_done(
        self,
        session: Session,
        job: Job,
        fragment: Fragment,
        result: pb.FragmentResult,
        settings: Settings,
    ) -> list[JobEventRow]:
        """React to a fragment just counted (progress, the result, the next step)."""
        ...


_CIRCUITS = CircuitsRunner()
_STEPS = StepRunner()


def runner_for(job: Job) -> JobRunner:
    """The runner of the job's kind."""
    return _STEPS if job_kind(job.kind).stepwise else _CIRCUITS
