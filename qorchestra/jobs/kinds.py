"""The one registry of job kinds: name -> behaviour (``JobKind``), the union of the jobs a
user may submit, and the examples the OpenAPI docs show for each."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from qorchestra.examples import example
from qorchestra.jobs.circuits import CircuitsJob, CircuitsKind
from qorchestra.jobs.kind import JobKind
from qorchestra.jobs.training import MinimizeKind, PredictKind, TrainKind
from qorchestra.training.spec import MinimizeJob, TrainJob

#: Every kind, by the value of its ``kind`` field.
KINDS: dict[str, JobKind] = {
    kind.name: kind for kind in (CircuitsKind(), TrainKind(), MinimizeKind(), PredictKind())
}
#: Kinds run step by step (an optimizer loop) rather than as one batch.
STEPWISE_KINDS: frozenset[str] = frozenset(name for name, k in KINDS.items() if k.stepwise)


def job_kind(name: str) -> JobKind:
    """The behaviour of the kind named ``name``; KeyError for an unknown kind."""
    return KINDS[name]


def _kind_of(value: object) -> str:
    """The job kind of a request body or model; bodies without one are circuits jobs."""
    if isinstance(value, dict):
        return str(value.get("kind", "circuits"))
    return str(getattr(value, "kind", "circuits"))


#: Any job a user may submit, told apart by ``kind`` (``circuits`` when absent).
AnyJob = Annotated[
    Annotated[CircuitsJob, Tag("circuits")]
    | Annotated[TrainJob, Tag("train")]
    | Annotated[MinimizeJob, Tag("minimize")],
    Discriminator(_kind_of),
]

#: The examples ``POST /v1/jobs`` shows in its OpenAPI docs, one per kind a user submits, each
#: the one copy in ``examples/`` (each valid: ``tests/unit/test_openapi_docs.py``).
JOB_EXAMPLES: dict[str, dict[str, Any]] = {
    "circuits": {
        "summary": "Circuits: expectation values of a parameter sweep",
        "value": example("bell-sweep"),
    },
    "train": {
        "summary": "Train: a variational classifier on the built-in moons set",
        "value": example("moons-classifier"),
    },
    "minimize": {
        "summary": "Minimize: VQE of the built-in H2 Hamiltonian",
        "value": example("h2-vqe"),
    },
}
