"""How many Braket quantum tasks a fragment takes, and which bindings each one carries. Pure.

A Braket device that accepts program sets (device action ``braket.ir.openqasm.program_set``)
runs many *executables* (a program with one set of inputs) in one quantum task: at most its
``maximumExecutables`` of them, at most ``maximumTotalShots`` shots in all, and at least
``minimumTotalShots`` where the device sets one. A program set samples every executable, so it
needs shots. Elsewhere, and for exact (``shots = 0``) runs, every executable is a task of its
own: one per binding and run (a fragment whose sampled observables cannot share a run has
several runs per binding).

:func:`plan_tasks` cuts a fragment's bindings into as few program-set tasks as the limits allow,
of near-equal size, and keeps the runs of one binding in the same task. The node agent plans
its submissions with it; :func:`task_count` is the same answer as a number, for estimates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgramSetLimits:
    """A device's program-set limits (its ``braket.ir.openqasm.program_set`` action)."""

    max_executables: int
    max_total_shots: int
    min_total_shots: int = 0


@dataclass(frozen=True)
class TaskPlan:
    """The quantum tasks of one fragment.

    With ``program_sets``, each of ``chunks`` (consecutive binding indices) is one program-set
    task holding ``runs_per_binding`` executables per binding. Without, each chunk is one
    binding, and each of its runs is a task of its own.
    """

    program_sets: bool
    chunks: tuple[range, ...]
    runs_per_binding: int = 1

    @property
    def tasks(self) -> int:
        """How many quantum tasks the fragment creates."""
        if self.program_sets:
            return len(self.chunks)
        return len(self.chunks) * self.runs_per_binding


def plan_tasks(
    bindings: int,
    shots: int,
    limits: ProgramSetLimits | None,
    runs_per_binding: int = 1,
) -> TaskPlan:
    """The tasks of a fragment of ``bindings`` bindings, ``runs_per_binding`` runs each, of
    ``shots`` shots per run, on a device with program-set ``limits`` (None: no program sets).

    Program sets are used when the device has them, the runs are sampled (``shots > 0``), and at
    least one binding fits the limits; otherwise every run of every binding is a task.
    """
    if bindings < 0 or shots < 0 or runs_per_binding < 1:
        raise ValueError(
            f"bindings ({bindings}) and shots ({shots}) must be >= 0, "
            f"runs_per_binding ({runs_per_binding}) >= 1"
        )
    singles = TaskPlan(
        program_sets=False,
        chunks=tuple(range(b, b + 1) for b in range(bindings)),
        runs_per_binding=runs_per_binding,
    )
    if limits is None or shots == 0 or bindings == 0:
        return singles
    shots_per_binding = shots * runs_per_binding
    per_task = min(
        limits.max_executables // runs_per_binding,
        limits.max_total_shots // shots_per_binding,
    )
    if per_task < 1:
        return singles
    count = -(-bindings // per_task)
    size, extra = divmod(bindings, count)
    if size * shots_per_binding < limits.min_total_shots:
        # The smallest of the fewest, most even chunks is below the device's minimum; more
        # chunks would only be smaller.
        return singles
    chunks = []
    start = 0
    for k in range(count):
        stop = start + size + (1 if k < extra else 0)
        chunks.append(range(start, stop))
        start = stop
    return TaskPlan(program_sets=True, chunks=tuple(chunks), runs_per_binding=runs_per_binding)


def task_count(
    bindings: int,
    shots: int,
    limits: ProgramSetLimits | None,
    runs_per_binding: int = 1,
) -> int:
    """How many quantum tasks :func:`plan_tasks` makes of such a fragment."""
    return plan_tasks(bindings, shots, limits, runs_per_binding).tasks


def task_bound(
    fragments: list[int] | tuple[int, ...],
    shots: int,
    limits: ProgramSetLimits | None,
    runs_per_binding: int = 1,
) -> int:
    """The most quantum tasks fragments of these binding counts make, whatever number of
    runs (1 to ``runs_per_binding``) an agent groups each binding's observables into:
    :func:`task_count` is not monotone in the runs (fewer runs may miss a device's minimum
    total shots, and go one task per executable), so every grouping is counted. For
    estimates."""
    return sum(
        max(task_count(b, shots, limits, runs) for runs in range(1, runs_per_binding + 1))
        for b in fragments
    )
