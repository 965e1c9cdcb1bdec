"""What a job costs on a paid pool (``aws-*``, ``emu-*``): an upper bound from a price table
before it runs (the estimate), and what its quantum tasks actually used after (the actual).
Pure.

Braket bills per quantum task and per shot. How many executables (a program with one set of
inputs) a job runs is its kind's to say (``JobKind.prepare`` in ``qorchestra/jobs/``); how many
tasks they make is the device's program-set limits' (``qorchestra/program_sets.py``); this
module prices them, checks what an agent reports a fragment used (:func:`usage_problem`), and
says what a finished job gives back to its tenant's budget (:func:`refund_usd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """USD per quantum task and per shot."""

    per_task: float
    per_shot: float


#: Pools whose jobs are priced: Braket's devices and managed simulators (``aws-*``), and the
#: emulated devices (``emu-*``), which carry their device's price so that a job's cost cap,
#: estimate and budget are rehearsed before it runs on the real one.
PAID_PREFIXES = ("aws-", "emu-")


def is_paid(pool: str) -> bool:
    """Whether jobs on ``pool`` are priced and charged to the tenant's budget."""
    return pool.startswith(PAID_PREFIXES)


def estimate_usd(executables: int, shots: int, price: Price, tasks: int | None = None) -> float:
    """The cost of ``executables`` runs of ``shots`` shots each in ``tasks`` quantum tasks
    (default: one task per executable, an upper bound where program sets are unknown), rounded
    up to the cent."""
    tasks = executables if tasks is None else tasks
    cost = tasks * price.per_task + executables * shots * price.per_shot
    return math.ceil(round(cost * 100, 6)) / 100


def actual_usd(tasks: int, shots: int, price: Price) -> float:
    """What ``tasks`` quantum tasks of ``shots`` shots in all cost (not rounded)."""
    return tasks * price.per_task + shots * price.per_shot


#: Relative slack of the float sums an agent and the orchestrator compute apart.
TOLERANCE = 1e-9


def usage_problem(
    *,
    tasks: int,
    shots: int,
    cost_usd: float,
    price_per_task_usd: float,
    price_per_shot_usd: float,
    max_executables: int,
    shots_per_run: int,
    table: Price,
) -> str | None:
    """Why an agent's report of what a fragment used cannot be true, or None when it can.

    A fragment of ``max_executables`` executables (bindings x runs, at most) of
    ``shots_per_run`` shots each makes at most one task per executable and runs at most
    ``max_executables * shots_per_run`` shots. Every number is finite and non-negative, the
    cost is what the reported prices make of the tasks and shots, and no more than the
    orchestrator's own price ``table`` makes of them: an agent cannot charge more than the table
    says, whatever prices it reports."""
    numbers = {
        "cost_usd": cost_usd,
        "price_per_task_usd": price_per_task_usd,
        "price_per_shot_usd": price_per_shot_usd,
    }
    for name, value in numbers.items():
        if not math.isfinite(value) or value < 0:
            return f"usage {name} is {value}, not a finite number >= 0"
    if tasks < 0 or shots < 0:
        return f"usage of {tasks} tasks and {shots} shots"
    if tasks > max_executables:
        return f"usage of {tasks} tasks; the fragment makes at most {max_executables}"
    if shots > max_executables * shots_per_run:
        return (
            f"usage of {shots} shots; the fragment runs at most {max_executables} x {shots_per_run}"
        )
    priced = actual_usd(tasks, shots, Price(price_per_task_usd, price_per_shot_usd))
    if abs(cost_usd - priced) > TOLERANCE * max(1.0, priced):
        return f"usage cost ${cost_usd} is not {tasks} tasks and {shots} shots at its prices"
    bound = actual_usd(tasks, shots, table)
    if cost_usd > bound + TOLERANCE * max(1.0, bound):
        return f"usage cost ${cost_usd} exceeds ${bound} from the pool's price table"
    return None


def refund_usd(estimate: float, actual: float) -> float:
    """What a finished job gives back to its tenant's budget: the estimate charged at
    submission less what its tasks actually cost, so that the job's charge becomes its actual
    cost, never less. Negative (the excess is charged) only if the actual passed the estimate,
    which the bounds on what agents report keep from happening."""
    return estimate - actual
