"""Job specifications: the request schema and its validation.

Schema checks (types, bounds) are pydantic's; ``validate_job`` adds what needs the programs
themselves (Braket parsing, qubit limits, binding names). Both report errors as
``(location, message)`` pairs so the API can answer 422 naming the field.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qorchestra.config import Settings
from qorchestra.cutting.layout import (
    CuttingSpec,
    circuit_runs,
    cut_plans,
    cut_problems,
    run_programs,
    settle_cutting,
)
from qorchestra.examples import example
from qorchestra.jobs.errors import Fail, FieldError, SpecError
from qorchestra.jobs.kind import DatasetLookup, Location, Prepared
from qorchestra.pool_choice import PoolChoice, pool_field
from qorchestra.program_sets import ProgramSetLimits, task_bound
from qorchestra.qasm import ProgramError, ProgramInfo, analyze
from qorchestra.training.spec import MaxCostUsd, MaxQueueS
from qorchestra.training.trainer import Setup

#: The OpenAPI example of a circuits job (``examples/bell-sweep.json``).
CIRCUITS_EXAMPLE: dict[str, Any] = example("bell-sweep")

_PAULI = re.compile(r"^[IXYZ]+$")


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


class CircuitsJob(BaseModel):
    """A job submitted over HTTP."""

    model_config = ConfigDict(
        extra="forbid", serialize_by_alias=True, json_schema_extra={"examples": [CIRCUITS_EXAMPLE]}
    )

    name: str = Field("", max_length=200, description="A label for people; need not be unique.")
    kind: Literal["circuits"] = Field("circuits", description="`circuits`: run circuit batches.")
    pools: PoolChoice = pool_field()
    shots: int = Field(0, ge=0, description="Shots per binding; 0 = exact results.")
    result: ResultSpec = Field(description="What each binding returns.")
    programs: list[ProgramSpec] = Field(min_length=1, description="The programs to run.")
    max_cost_usd: MaxCostUsd = None
    max_queue_s: MaxQueueS = None
    cutting: CuttingSpec | None = Field(
        None,
        description="Cut programs wider than `max_subcircuit_qubits` into subcircuits that run "
        "on many nodes (expectation results only). On by itself, at the pool's qubit limit, "
        "for programs wider than the pool.",
    )

    @property
    def pool(self) -> str:
        """The first pool it names: the one the API checks it against first."""
        return self.pools[0]


def validate_job(job: CircuitsJob, settings: Settings) -> list[ProgramInfo]:
    """Check what the schema cannot: programs, qubit limits, bindings, shots and sizes.

    Returns one ProgramInfo per program; raises SpecError listing every problem found.
    """
    errors: list[FieldError] = []

    def fail(*loc: str | int, msg: str) -> None:
        errors.append(FieldError(loc, msg))

    if job.pool.startswith("aws-") and settings.aws_device_arn(job.pool) is None:
        fail("pool", msg=f"unknown AWS pool {job.pool!r}; configure it in QORCH_AWS_DEVICES")
    if job.pool.startswith("emu-") and settings.emulated_profile(job.pool) is None:
        known = ", ".join(sorted(settings.emulated_profiles()))
        fail("pool", msg=f"unknown emulated device {job.pool!r} (known: {known})")
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
    job.cutting = settle_cutting(job, settings)  # wider than the pool: cut (expectations)
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


def _check_bindings(program: ProgramSpec, info: ProgramInfo, index: int, fail: Fail) -> None:
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


def circuits_tasks(job: CircuitsJob) -> int:
    """Quantum tasks of a (validated) circuits job, at most."""
    sampled = job.shots > 0 and job.result.type == ResultType.EXPECTATION
    total = 0
    for run in run_programs(job):
        bindings = max(1, len(job.programs[run.origin].bindings))
        total += bindings * (max(1, len(run.observables)) if sampled else 1)
    return total


def circuits_program_set_tasks(
    job: CircuitsJob, bindings_per_fragment: int, limits: ProgramSetLimits | None
) -> int | None:
    """Quantum tasks of a (validated) circuits job at most, on a device with program-set
    ``limits``, its fragments cut as the orchestrator cuts them (``plan_fragments``: each run
    program's bindings in slices of ``bindings_per_fragment``); None without limits."""
    if limits is None:
        return None
    sampled = job.shots > 0 and job.result.type == ResultType.EXPECTATION
    total = 0
    for run in run_programs(job):
        bindings = max(1, len(job.programs[run.origin].bindings))
        runs = max(1, len(run.observables)) if sampled else 1
        step = bindings_per_fragment
        sizes = [min(step, bindings - offset) for offset in range(0, bindings, step)]
        total += task_bound(sizes, job.shots, limits, runs)
    return total


class CircuitsKind:
    """Circuit batches: every binding of every program, in fragments written in windows."""

    name = "circuits"
    spec = CircuitsJob
    stepwise = False
    size_field: Location = ("programs",)

    def programs(self, job: CircuitsJob) -> list[tuple[Location, str]]:
        """Each program's source."""
        return [(("programs", i, "source"), p.source) for i, p in enumerate(job.programs)]

    def dataset_id(self, job: CircuitsJob) -> str | None:
        """Circuits jobs read no dataset."""
        return None

    def setup(self, job: CircuitsJob, settings: Settings, datasets: DatasetLookup) -> Setup | None:
        """Circuits jobs have no model."""
        return None

    def prepare(self, job: CircuitsJob, settings: Settings, datasets: DatasetLookup) -> Prepared:
        """Validate (cutting is settled on the job) and count its circuit runs and tasks."""
        validate_job(job, settings)
        return Prepared(
            result_type=job.result.type.value,
            observables=len(job.result.observables),
            bindings_total=circuit_runs(job),  # a cut program counts once per subexperiment
            tasks=circuits_tasks(job),
            cut_plans=cut_plans(job),
            binding_counts={i: len(p.bindings) for i, p in enumerate(job.programs)},
            program_set_tasks=circuits_program_set_tasks(
                job, settings.fragment_bindings, settings.program_set_limits(job.pool)
            ),
        )
