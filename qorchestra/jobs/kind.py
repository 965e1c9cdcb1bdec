"""What every job kind provides: the :class:`JobKind` protocol and what admitting a job yields.

The implementations are ``qorchestra/jobs/circuits.py`` (circuit batches) and
``qorchestra/jobs/training.py`` (train, minimize, predict); ``qorchestra/jobs/kinds.py`` is
the one registry that maps a kind's name to its implementation. Code that behaves per kind asks
the registry (``job_kind(job.kind)``) instead of testing types or kind names itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from qorchestra.config import Settings
from qorchestra.training.data import Dataset
from qorchestra.training.trainer import Setup

#: Where in a request body a user-written program stands, e.g. ``("programs", 0, "source")``.
Location = tuple[str | int, ...]

#: Looks up an uploaded dataset by id (None when there is none); the store provides it.
DatasetLookup = Callable[[str], Dataset | None]


@dataclass(frozen=True)
class Prepared:
    """A validated job and what is stored with it."""

    result_type: str  # counts, probabilities or expectation
    observables: int  # observables per binding (0 for counts and probabilities)
    bindings_total: int  # circuit runs progress counts up front (0: counted step by step)
    tasks: int  # executables the job runs, at most (to its last step): one task each at most
    cut_plans: dict[str, Any] | None  # each cut program's plan, for people
    binding_counts: dict[int, int] | None = None  # bindings per program (cut progress)
    setup: Setup | None = None  # a training kind's model, data and readout
    #: Quantum tasks the job makes at most where its pool's program-set limits are known
    #: (``QORCH_AWS_PROGRAM_SET_LIMITS``) and its kind can count them; None: one per executable.
    program_set_tasks: int | None = None


class JobKind(Protocol):
    """The behaviour of one kind of job."""

    @property
    def name(self) -> str:
        """The ``kind`` field's value."""
        ...

    @property
    def spec(self) -> type[BaseModel]:
        """The request (or stored) schema."""
        ...

    @property
    def stepwise(self) -> bool:
        """Run step by step (an optimizer loop: ``orchestrator/training_steps.py``) rather
        than as one batch of fragments written in windows."""
        ...

    @property
    def size_field(self) -> Location:
        """The request field that sets how many circuits the job runs: a refusal by the
        tenant's circuits-per-job quota names it."""
        ...

    def programs(self, job: Any) -> list[tuple[Location, str]]:
        """Every user-written program of the job, with where it stands in the request."""
        ...

    def dataset_id(self, job: Any) -> str | None:
        """The uploaded dataset the job reads, if any."""
        ...

    def setup(self, job: Any, settings: Settings, datasets: DatasetLookup) -> Setup | None:
        """The job's model, data and readout (None for kinds without one); raises SpecError."""
        ...

    def prepare(self, job: Any, settings: Settings, datasets: DatasetLookup) -> Prepared:
        """Validate the job as a whole (it may settle fields that are stored with it, such
        as cutting) and say what is stored; raises SpecError naming every field at fault."""
        ...
