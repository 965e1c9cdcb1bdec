"""Training through circuit cutting (pure, no I/O): a model wider than its pool runs as the
subexperiments of its cut plan, and each readout is knitted back before the optimizer sees it.

A subexperiment program declares the model's inputs, so a training fragment carries it with
the same :class:`~proto.qorch.v1.fragments_pb2.Encoding` (raw samples, weights, shifts) as
the uncut step: only ``program``, ``observables`` and ``qubits`` change. Every slice of a step
is sent once per subexperiment; the fragment row's ``program_index`` is the subexperiment's
index. When the step's fragments are in, :func:`readouts` reconstructs the readouts
(bindings x observables) that :func:`qorchestra.training.trainer.advance` takes, so the
trainer does not know the circuit was cut: in exact mode the losses are those of the uncut run.

The plan is decided by the stored spec alone (``cutting``, settled at submission by
:func:`settle`), so every orchestrator process recomputes the same subexperiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.cutting.experiments import CutExperiment
from qorchestra.cutting.ir import AngleFunction, CuttingError
from qorchestra.cutting.layout import experiment_for, limit_problems, plan_for, settled_spec
from qorchestra.cutting.plan import DEFAULT_SEARCH_STATES, CutPlan, GateCut
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.training.spec import MinimizeJob, PredictJob, TrainJob
from qorchestra.training.trainer import Setup, StepRequest

#: Widest model a job may declare when it can be cut (its plan then decides).
MAX_WIDTH = 64
#: Key of the model's plan in the job's ``cutting`` plans.
PLAN_KEY = "model"


@dataclass(frozen=True)
class Run:
    """One subexperiment a training slice is sent as."""

    index: int  # the fragment row's program_index
    source: str
    observables: tuple[str, ...]
    qubits: int
    subcircuit: int


def width_limit(spec: TrainJob | MinimizeJob | PredictJob, settings: Settings) -> int:
    """Qubits the model may have at validation: any (up to :data:`MAX_WIDTH`) for jobs that
    can be cut, the pool's limit for predictions (they are not cut)."""
    if isinstance(spec, PredictJob):
        return settings.max_qubits(spec.pool)
    return max(MAX_WIDTH, settings.max_qubits(spec.pool))


def cut_width(spec: TrainJob | MinimizeJob | PredictJob, qubits: int, settings: Settings) -> int:
    """Subcircuit width the model is cut to, or 0 when it runs whole."""
    if isinstance(spec, PredictJob):
        return 0
    limit = settings.max_qubits(spec.pool)
    k = limit if spec.cutting is None else min(spec.cutting.max_subcircuit_qubits, limit)
    return k if qubits > k else 0


def experiment(
    spec: TrainJob | MinimizeJob | PredictJob, setup: Setup, settings: Settings
) -> CutExperiment | None:
    """The model's cut experiment, or None when it runs whole (cached by source and width)."""
    k = cut_width(spec, setup.model.qubits, settings)
    if not k:
        return None
    cutting = None if isinstance(spec, PredictJob) else spec.cutting
    budget = cutting.search_budget if cutting is not None else None
    return experiment_for(setup.model.source, setup.observables, k, DEFAULT_SEARCH_STATES, budget)


def settle(spec: TrainJob | MinimizeJob | PredictJob, setup: Setup, settings: Settings) -> None:
    """Turn cutting on for a model wider than the pool (so the stored spec says so) and check
    the plan; raises SpecError naming the numbers when it is beyond the limits."""
    if isinstance(spec, PredictJob):
        return
    qubits, limit = setup.model.qubits, settings.max_qubits(spec.pool)
    if spec.cutting is None and qubits > limit:
        if limit < 2:
            raise SpecError([FieldError(("cutting",), _too_wide(qubits, limit, "no plan fits"))])
        spec.cutting = settled_spec(None, limit, settings)
    k = cut_width(spec, qubits, settings)
    if not k:
        return
    budget = spec.cutting.search_budget if spec.cutting is not None else None
    try:
        plan = plan_for(setup.model.source, k, DEFAULT_SEARCH_STATES, budget)
    except CuttingError as exc:
        raise SpecError([FieldError(("cutting",), _too_wide(qubits, limit, str(exc)))]) from exc
    problems = _problems(plan, settings)
    if problems:
        raise SpecError([FieldError(("cutting",), problem) for problem in problems])


def settle_budget(spec: TrainJob | MinimizeJob | PredictJob, settings: Settings) -> None:
    """At submission: give a job that asks for cutting the search budget of the settings (a
    budget it names is capped by it). Not on the stored spec: every orchestrator process must
    plan with the budget stored at submission, whatever its own setting."""
    if isinstance(spec, PredictJob) or spec.cutting is None:
        return
    spec.cutting = settled_spec(spec.cutting, spec.cutting.max_subcircuit_qubits, settings)


def _too_wide(qubits: int, limit: int, why: str) -> str:
    return f"{qubits} qubits; the pool allows {limit} and the circuit cannot be cut: {why}"


def _problems(plan: CutPlan, settings: Settings) -> list[str]:
    problems = limit_problems(plan, settings)
    varying = [
        c.op_index
        for c in plan.cuts
        if isinstance(c, GateCut) and AngleFunction(c.form.theta).constant is None
    ]
    if varying:
        problems.append(
            f"the cut gates at operations {varying} have angles that depend on the inputs; "
            "training can only cut gates of fixed angle (cnot, cz, cy, ...) and wires"
        )
    return problems


def plans(
    spec: TrainJob | MinimizeJob | PredictJob, setup: Setup, settings: Settings
) -> dict[str, dict[str, Any]] | None:
    """The model's cut plan for people (``{"model": plan}``), or None when it runs whole."""
    found = experiment(spec, setup, settings)
    if found is None:
        return None
    plan = {
        **found.plan.summary(),
        "subexperiments": len(found.programs),
        "programs_per_subcircuit": found.program_counts,
    }
    return {PLAN_KEY: plan}


def runs(found: CutExperiment) -> list[Run]:
    """The subexperiments every slice of a step is sent as."""
    return [
        Run(i, p.source, p.observables, p.qubits, p.subcircuit)
        for i, p in enumerate(found.programs)
    ]


def retarget(message: pb.Fragment, run: Run) -> None:
    """Make a step's fragment run one subexperiment (same encoding), in place."""
    message.program = run.source
    del message.observables[:]
    message.observables.extend(run.observables)
    message.qubits = run.qubits


@dataclass(frozen=True)
class Answer:
    """A finished fragment of a cut step: its subexperiment, first binding and values."""

    program_index: int
    binding_offset: int
    values: Sequence[Sequence[float]]


def readouts(found: CutExperiment, request: StepRequest, answers: Sequence[Answer]) -> np.ndarray:
    """The step's readouts (bindings x the model's observables), knitted from the answers of
    every subexperiment. Raises ValueError when a binding has no value or two."""
    count = request.circuits
    table: list[list[Sequence[float] | None]] = [[None] * count for _ in found.programs]
    for answer in answers:
        slots = table[answer.program_index]
        for i, row in enumerate(answer.values):
            position = answer.binding_offset + i
            if slots[position] is not None:
                raise ValueError(f"subexperiment {answer.program_index} binding {position} twice")
            slots[position] = row
    results: list[list[Sequence[float]]] = []
    for p, slots in enumerate(table):
        missing = [j for j, row in enumerate(slots) if row is None]
        if missing:
            raise ValueError(f"subexperiment {p} has no value for bindings {missing[:10]}")
        results.append([row for row in slots if row is not None])
    # settle() refused input-dependent cut angles, so no binding values are needed here
    knitted = found.reconstruct(results, [{}] * count)
    return np.asarray(knitted, dtype=float).reshape(count, len(found.observables))


def observable_count(payload: bytes) -> int:
    """Values each binding of a stored training fragment answers (its own observables)."""
    return len(pb.Fragment.FromString(payload).observables)
