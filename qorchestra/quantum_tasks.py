"""Paid quantum tasks (Amazon Braket) as agents report them: the checks every reported value
passes before anything records or acts on it. Pure; no I/O.

An agent of a QPU pool reports the tasks of each fragment attempt (``FragmentSubmitted``) before
it waits on them; the orchestrator records them, carries them in the fragment's next dispatch
(``Fragment.tasks``) so that the next agent resumes them, and asks the pool's agents to cancel
them (``CancelTasks``) when their job is cancelled or fails. Messages from the bus are untrusted:
a value that is not a Braket task ARN, a client token, a task state or a sane index is refused
here (docs/qpu.md, "Idempotent submission").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from proto.qorch.v1 import fragments_pb2 as pb

#: A Braket quantum task ARN (any partition and region; a 12-digit account).
TASK_ARN = re.compile(
    r"arn:aws[a-z-]{0,20}:braket:[a-z0-9-]{1,32}:\d{12}:quantum-task/[\w-]{1,128}", re.ASCII
)
#: A Braket device ARN (the managed simulators have no region and no account).
DEVICE_ARN = re.compile(
    r"arn:aws[a-z-]{0,20}:braket:[a-z0-9-]{0,32}:\d{0,12}:device/[\w./-]{1,200}", re.ASCII
)
#: CreateQuantumTask's ``clientToken``: 1 to 64 characters (ours are UUIDs).
CLIENT_TOKEN = re.compile(r"[\w-]{1,64}", re.ASCII)
#: Braket's task states; empty where the agent has not seen one yet.
STATES = frozenset(
    {"", "CREATED", "QUEUED", "RUNNING", "CANCELLING", "CANCELLED", "COMPLETED", "FAILED"}
)
#: States after which nothing changes.
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
#: Most tasks one fragment attempt may report (a fragment of 64 bindings, one task per binding
#: and run, stays far below).
MAX_TASKS = 10_000
#: Highest client-token generation (each replacement of a cancelled task adds one).
MAX_GENERATION = 1_000


@dataclass(frozen=True)
class ReportedTask:
    """One task of a report, checked."""

    index: int
    arn: str
    client_token: str
    generation: int  # of its client token
    status: str


def checked_tasks(tasks: Sequence[pb.QuantumTask]) -> list[ReportedTask]:
    """The tasks of a report; ValueError when there are none or too many, when an index or ARN
    repeats, or when a value is not what Braket gives (an ARN, a client token, a state) or a
    sane generation."""
    if not tasks:
        raise ValueError("a task report without tasks")
    if len(tasks) > MAX_TASKS:
        raise ValueError(f"{len(tasks)} tasks in one report; at most {MAX_TASKS}")
    checked: list[ReportedTask] = []
    indices: set[int] = set()
    arns: set[str] = set()
    for task in tasks:
        if task.index >= MAX_TASKS:
            raise ValueError(f"task index {task.index}; at most {MAX_TASKS - 1}")
        if not TASK_ARN.fullmatch(task.arn):
            raise ValueError(f"not a Braket quantum task ARN: {task.arn[:300]!r}")
        if not CLIENT_TOKEN.fullmatch(task.client_token):
            raise ValueError(f"not a client token: {task.client_token[:100]!r}")
        if not 1 <= task.generation <= MAX_GENERATION:
            raise ValueError(f"task {task.index} of generation {task.generation}")
        if task.status not in STATES:
            raise ValueError(f"not a Braket task state: {task.status[:50]!r}")
        if task.index in indices or task.arn in arns:
            raise ValueError(f"task {task.index} ({task.arn}) reported twice")
        indices.add(task.index)
        arns.add(task.arn)
        checked.append(
            ReportedTask(task.index, task.arn, task.client_token, task.generation, task.status)
        )
    return checked


def check_device(device_arn: str, expected: str | None) -> None:
    """ValueError unless ``device_arn`` is a Braket device ARN, and ``expected`` when given
    (the device the receiver's settings map the pool to)."""
    if not DEVICE_ARN.fullmatch(device_arn):
        raise ValueError(f"not a Braket device ARN: {device_arn[:300]!r}")
    if expected is not None and device_arn != expected:
        raise ValueError(f"tasks on device {device_arn}, but the pool's device is {expected}")


def cancellable_arns(tasks: Sequence[pb.QuantumTask]) -> list[str]:
    """The task ARNs of a cancel request, each once; ValueError when one is not a Braket task
    ARN or there are too many."""
    if len(tasks) > MAX_TASKS:
        raise ValueError(f"{len(tasks)} tasks in one cancel request; at most {MAX_TASKS}")
    for task in tasks:
        if not TASK_ARN.fullmatch(task.arn):
            raise ValueError(f"not a Braket quantum task ARN: {task.arn[:300]!r}")
    return list(dict.fromkeys(task.arn for task in tasks))
