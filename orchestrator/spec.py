"""Job specifications: the request schema and its validation.

Schema checks (types, bounds) are pydantic's; ``validate_job`` adds what needs the programs
themselves (Braket parsing, qubit limits, binding names). Both report errors as
``(location, message)`` pairs so the API can answer 422 naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from orchestrator.cutting.jobs import CuttingSpec, cut_problems, settle_cutting
from orchestrator.qasm import ProgramError, ProgramInfo, analyze
from orchestrator.training.spec import (
    MINIMIZE_EXAMPLE,
    TRAIN_EXAMPLE,
    MaxCostUsd,
    MinimizeJob,
    TrainJob,
)
from qorch.config import Settings

EXAMPLE_PROGRAM = """OPENQASM 3.0;
input float theta0;
input float theta1;
qubit[2] q;
ry(theta0) q[0];
cnot q[0], q[1];
ry(theta1) q[1];
"""

#: The OpenAPI example of a circuits job: two parameter settings of a 2-qubit circuit.
CIRCUITS_EXAMPLE: dict[str, Any] = {
    "name": "bell-sweep",
    "kind": "circuits",
    "pool": "local-sv",
    "shots": 0,
    "result": {"type": "expectation", "observables": ["ZZ", "XI"]},
    "programs": [
        {
            "source": EXAMPLE_PROGRAM,
            "bindings": [{"theta0": 0.1, "theta1": 0.2}, {"theta0": 1.5, "theta1": -0.4}],
        }
    ],
}

_PAULI = re.compile(r"^[IXYZ]+$")
_POOL = re.compile(r"^(local-sv|local-dm|aws-[a-z0-9][a-z0-9-]*)$")


class ResultType(StrEnum):
    """What each binding returns."""

    COUNTS = "counts"
    PROBABILITIES = "probabilities"
    EXPECTATION = "expectation"


class ResultSpec(BaseModel):
    """What to return for every binding of every program."""

    model_config = ConfigDict(extra="forbid")

    type: ResultType = Field(
        description="`counts` (needs shots > 0), `probabilities`, or `expectation` of observables."
    )
    observables: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description="For `expectation`: Pauli strings over I, X, Y, Z, one letter per qubit, "
        "qubit 0 first (e.g. `ZZ` is Z on qubits 0 and 1).",
    )

    @field_validator("observables")
    @classmethod
    def _pauli(cls, value: list[str]) -> list[str]:
        for obs in value:
            if not _PAULI.match(obs):
                raise ValueError(f"observable {obs!r} must use only the letters I, X, Y, Z")
        return value


class ProgramSpec(BaseModel):
    """One OpenQASM 3 program and the input values to run it with."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        description="OpenQASM 3 source. Parameters are declared as `input float name;`.",
    )
    bindings: list[dict[str, float]] = Field(
        default_factory=list,
        description="Values for the program's inputs, one object per run; each names exactly "
        "the program's inputs. Empty means one run, for a program without inputs.",
    )


class JobCreate(BaseModel):
    """A job submitted over HTTP."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CIRCUITS_EXAMPLE]})

    name: str = Field("", max_length=200, description="A label for people; need not be unique.")
    kind: Literal["circuits"] = Field("circuits", description="`circuits`: run circuit batches.")
    pool: str = Field(
        "local-sv",
        description="Device pool: `local-sv` (state vector), `local-dm` (density matrix) or an "
        "AWS pool such as `aws-sv1`.",
    )
    shots: int = Field(0, ge=0, description="Shots per binding; 0 = exact results.")
    result: ResultSpec = Field(description="What each binding returns.")
    programs: list[ProgramSpec] = Field(min_length=1, description="The programs to run.")
    max_cost_usd: MaxCostUsd = None
    cutting: CuttingSpec | None = Field(
        None,
        description="Cut programs wider than `max_subcircuit_qubits` into subcircuits that run "
        "on many nodes (expectation results only). On by itself, at the pool's qubit limit, "
        "for programs wider than the pool.",
    )

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not _POOL.match(value):
            raise ValueError("pool must be local-sv, local-dm or aws-<device>")
        return value


class _Fail(Protocol):
    def __call__(self, *loc: str | int, msg: str) -> None: ...


@dataclass(frozen=True)
class FieldError:
    """One reason a job is refused: where (a path into the request body) and why."""

    loc: tuple[str | int, ...]
    msg: str


class SpecError(ValueError):
    """The job is not valid; ``errors`` names every field at fault."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors


def validate_job(job: JobCreate, settings: Settings) -> list[ProgramInfo]:
    """Check what the schema cannot: programs, qubit limits, bindings, shots and sizes.

    Returns one ProgramInfo per program; raises SpecError listing every problem found.
    """
    errors: list[FieldError] = []

    def fail(*loc: str | int, msg: str) -> None:
        errors.append(FieldError(loc, msg))

    if job.pool.startswith("aws-") and settings.aws_device_arn(job.pool) is None:
        fail("pool", msg=f"unknown AWS pool {job.pool!r}; configure it in QORCH_AWS_DEVICES")
    if job.shots > settings.max_shots:
        fail("shots", msg=f"at most {settings.max_shots} shots")
    if job.result.type == ResultType.COUNTS and job.shots == 0:
        fail("shots", msg="counts need shots > 0")
    if job.result.type == ResultType.EXPECTATION and not job.result.observables:
        fail("result", "observables", msg="expectation needs at least one observable")
    if len(job.result.observables) > settings.max_observables:
        fail("result", "observables", msg=f"at most {settings.max_observables} observables")
    if job.result.type != ResultType.EXPECTATION and job.result.observables:
        fail("result", "observables", msg="observables go only with type expectation")
    if job.cutting is not None and job.result.type != ResultType.EXPECTATION:
        fail("cutting", msg="cutting needs result type expectation")
    if len(job.programs) > settings.max_programs:
        fail("programs", msg=f"at most {settings.max_programs} programs")
    total = sum(max(1, len(p.bindings)) for p in job.programs)
    if total > settings.max_bindings:
        fail("programs", msg=f"{total} bindings in all; at most {settings.max_bindings}")
    if errors:
        raise SpecError(errors)

    limit = settings.max_qubits(job.pool)
    settle_cutting(job, settings)  # programs wider than the pool are cut (expectation only)
    infos: list[ProgramInfo] = []
    for i, program in enumerate(job.programs):
        if len(program.source) > settings.max_program_chars:
            fail("programs", i, "source", msg=f"longer than {settings.max_program_chars} chars")
            continue
        try:
            info = analyze(program.source)
        except ProgramError as exc:
            fail("programs", i, "source", msg=str(exc))
            continue
        infos.append(info)
        if job.cutting is not None and info.qubits > job.cutting.max_subcircuit_qubits:
            for problem in cut_problems(job, i, settings):
                fail("programs", i, "source", msg=problem)
        elif info.qubits > limit:
            fail(
                "programs",
                i,
                "source",
                msg=f"uses {info.qubits} qubits; pool {job.pool} allows {limit}",
            )
        if info.measures and job.result.type != ResultType.COUNTS:
            fail(
                "programs",
                i,
                "source",
                msg=f"measurement statements only go with result type counts, not "
                f"{job.result.type.value}",
            )
        for obs in job.result.observables:
            if len(obs) != info.qubits:
                fail(
                    "result",
                    "observables",
                    msg=f"observable {obs!r} has {len(obs)} letters; program {i} has "
                    f"{info.qubits} qubits",
                )
        _check_bindings(program, info, i, fail)
    if errors:
        raise SpecError(errors)
    return infos


def _check_bindings(program: ProgramSpec, info: ProgramInfo, index: int, fail: _Fail) -> None:
    expected = set(info.inputs)
    if not program.bindings and expected:
        fail("programs", index, "bindings", msg=f"needs bindings for {sorted(expected)}")
        return
    for j, binding in enumerate(program.bindings):
        names = set(binding)
        if names != expected:
            parts = []
            if expected - names:
                parts.append(f"missing {sorted(expected - names)}")
            if names - expected:
                parts.append(f"unknown {sorted(names - expected)}")
            fail(
                "programs",
                index,
                "bindings",
                j,
                msg="; ".join(parts) + f" (program inputs: {sorted(expected)})",
            )
            continue
        for name, value in binding.items():
            if not math.isfinite(value):
                fail("programs", index, "bindings", j, name, msg="must be a finite number")


def _kind_of(value: object) -> str:
    """The job kind of a request body or model; bodies without one are circuits jobs."""
    if isinstance(value, dict):
        return str(value.get("kind", "circuits"))
    return str(getattr(value, "kind", "circuits"))


#: Any job a user may submit, told apart by ``kind`` (``circuits`` when absent).
AnyJob = Annotated[
    Annotated[JobCreate, Tag("circuits")]
    | Annotated[TrainJob, Tag("train")]
    | Annotated[MinimizeJob, Tag("minimize")],
    Discriminator(_kind_of),
]

#: The examples ``POST /v1/jobs`` shows in its OpenAPI docs, one per job kind (each valid).
JOB_EXAMPLES: dict[str, dict[str, Any]] = {
    "circuits": {
        "summary": "Circuits: expectation values of a parameter sweep",
        "value": CIRCUITS_EXAMPLE,
    },
    "train": {
        "summary": "Train: a variational classifier on the built-in moons set",
        "value": TRAIN_EXAMPLE,
    },
    "minimize": {
        "summary": "Minimize: VQE of the built-in H2 Hamiltonian",
        "value": MINIMIZE_EXAMPLE,
    },
}
