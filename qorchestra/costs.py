"""What a job will cost on a paid pool (``aws-*``, ``emu-*``): an upper bound from a price table.
Pure.

Braket bills per quantum task and per shot. How many tasks a job makes is its kind's to say
(``JobKind.prepare`` in ``qorchestra/jobs/``); this module prices them.
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


def estimate_usd(tasks: int, shots: int, price: Price) -> float:
    """The cost of ``tasks`` tasks of ``shots`` shots each, rounded up to the cent."""
    cost = tasks * price.per_task + tasks * shots * price.per_shot
    return math.ceil(round(cost * 100, 6)) / 100
