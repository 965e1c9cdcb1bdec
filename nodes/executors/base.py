"""What every executor offers, and the one error type it raises."""

from __future__ import annotations

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
