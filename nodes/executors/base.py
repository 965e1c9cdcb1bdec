"""What every executor offers, and the one error type it raises; what an executor of paid
quantum tasks offers besides, and how it reports its tasks to the agent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from proto.qorch.v1 import fragments_pb2 as pb

#: Longest error text carried in a FragmentFailure.
MAX_MESSAGE_CHARS = 2000


class ExecutionError(Exception):
    """A fragment could not be executed.

    ``retryable`` says whether running it again (here or on another node) may succeed: False for
    a bad program, bad inputs or missing configuration, True for transient trouble.
    ``error_type`` names the underlying error (an exception class or a service error code).
    """

    def __init__(self, message: str, retryable: bool, error_type: str | None = None) -> None:
        message = message or "execution failed"
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.error_type = error_type or type(self).__name__

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, "
            f"error_type={self.error_type!r})"
        )


@runtime_checkable
class Executor(Protocol):
    """Runs every binding of a fragment on one backend."""

    @property
    def name(self) -> str:
        """The backend, e.g. ``braket_sv``, ``braket_dm`` or a device ARN."""
        ...

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """One result per binding, in the fragment's order; raises :class:`ExecutionError`."""
        ...

    def close(self) -> None:
        """Release what the executor holds; safe to call twice."""
        ...


@dataclass(frozen=True)
class Used:
    """What one fragment's run used on a device that bills per task and per shot: the quantum
    tasks that served it (created or resumed) and the shots of all their executables."""

    tasks: int
    shots: int


@runtime_checkable
class Metered(Protocol):
    """An executor that counts what each fragment used (the Braket devices, emulated or not),
    for the agent to report with the fragment's result."""

    @property
    def last_usage(self) -> Used | None:
        """What the last fragment ``execute`` (or ``execute_tasks``) ran to success used; None
        before one did. Read by the agent's one fragment thread, after the call."""
        ...


class Abandoned(Exception):
    """The agent stopped while its executor waited on paid tasks: they are left running, for
    the fragment's next delivery or attempt to resume, and no result is published."""


@dataclass(frozen=True)
class SubmittedTask:
    """One paid task of a fragment attempt, as the agent reports it."""

    index: int  # its position in the fragment's plan of tasks
    arn: str
    client_token: str
    generation: int  # of its client token (``nodes.executors.submission.client_token``)
    status: str = ""  # the state last seen; empty before the first poll


class TaskReporter(Protocol):
    """How an executor of paid tasks tells the agent about one fragment's tasks."""

    @property
    def interval_s(self) -> float:
        """How often to report while waiting on the tasks."""
        ...

    def submitted(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        """Every task of the attempt exists (created or resumed): report them and return once
        the broker acknowledged the report. Raises :class:`Abandoned` when the agent stopped
        first (nothing is committed: the fragment will be delivered again)."""
        ...

    def waiting(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        """Still waiting on them (a progress report; not waited on)."""
        ...

    def stopping(self) -> bool:
        """Whether the agent is stopping (the executor then raises :class:`Abandoned`)."""
        ...


@runtime_checkable
class QuantumTaskExecutor(Executor, Protocol):
    """An executor whose work is paid quantum tasks (Braket devices): it reports them before
    it waits on them, resumes those a fragment carries, and cancels tasks on request."""

    def execute_tasks(
        self, fragment: pb.Fragment, reporter: TaskReporter
    ) -> list[pb.BindingResult]:
        """As ``execute``, reporting the tasks through ``reporter``; raises
        :class:`ExecutionError`, or :class:`Abandoned` when the agent stopped meanwhile."""
        ...

    def cancel_tasks(self, arns: Sequence[str]) -> int:
        """Cancel these tasks (best effort); returns how many the service accepted."""
        ...
