"""Where the ``adjoint`` gradient applies (pure): an exact state vector on one local agent.

The adjoint method (``nodes/executors/adjoint.py``) reads the simulator's state vector, so it
needs pool ``local-sv``, exact expectations (``shots`` 0) and the whole circuit on one agent (no
cutting). Everywhere else :func:`adjoint_problems` names the gradient to use instead.
"""

from __future__ import annotations

from qorchestra.devices import EMULATED_PREFIX
from qorchestra.jobs.errors import FieldError
from qorchestra.training.spec import MinimizeJob, TrainJob

#: The one pool whose agents compute adjoint gradients.
ADJOINT_POOL = "local-sv"


def gradient_field(job: TrainJob | MinimizeJob) -> tuple[str, ...]:
    """Where the job names its gradient."""
    return ("training", "gradient") if isinstance(job, TrainJob) else ("gradient",)


def gradient_of(job: TrainJob | MinimizeJob) -> str:
    """The job's gradient: ``parameter_shift``, ``spsa`` or ``adjoint``."""
    return job.training.gradient if isinstance(job, TrainJob) else job.gradient


def adjoint_problems(
    job: TrainJob | MinimizeJob, qubits: int, pool_qubits: int
) -> list[FieldError]:
    """Why ``job`` cannot take the adjoint gradient (empty when it can, or does not ask).

    ``qubits`` is the model's width, ``pool_qubits`` the most the pool runs whole.
    """
    if gradient_of(job) != "adjoint":
        return []
    where = gradient_field(job)
    if job.pool != ADJOINT_POOL:
        if job.pool == "local-dm":
            why = "simulates density matrices (noise)"
        elif job.pool.startswith(EMULATED_PREFIX):
            why = "emulates a QPU, which only samples shots"
        elif job.pool.startswith("aws-"):
            why = "runs on a Braket device, whose state vector the agent cannot read"
        else:
            why = "has no exact state-vector simulator"
        return [
            FieldError(
                where,
                f"adjoint needs the exact state vector of pool {ADJOINT_POOL}; pool "
                f"{job.pool!r} {why}: use parameter_shift (exact on every pool) or spsa",
            )
        ]
    problems = []
    if job.shots:
        problems.append(
            FieldError(
                where,
                f"adjoint computes exact expectations and cannot sample shots ({job.shots} "
                "asked): set shots 0, or use parameter_shift to estimate from shots",
            )
        )
    if job.cutting is not None or qubits > pool_qubits:
        problems.append(
            FieldError(
                where,
                f"adjoint needs the whole circuit on one agent, and this {qubits}-qubit model "
                f"is cut (the pool runs at most {pool_qubits} qubits whole, or cutting was "
                "asked for): use parameter_shift",
            )
        )
    return problems
