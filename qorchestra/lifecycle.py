"""The job state machine: which status may follow which."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status: QUEUED (stored, not yet planned), RUNNING (fragments dispatched),
    CANCELLING (cancel requested, not yet stopped), then one of SUCCEEDED, FAILED, CANCELLED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLING, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLING, JobStatus.CANCELLED}
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow."""


def check_transition(current: str, target: str) -> None:
    """Raise InvalidTransition unless ``current -> target`` is allowed."""
    if JobStatus(target) not in _ALLOWED[JobStatus(current)]:
        raise InvalidTransition(f"a {current} job cannot become {target}")


def is_terminal(status: str) -> bool:
    """Whether a job in ``status`` is finished for good."""
    return JobStatus(status) in TERMINAL
