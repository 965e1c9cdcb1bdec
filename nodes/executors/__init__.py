"""Backends that run a fragment's bindings: the local Braket simulators, Braket's emulator of a
real device, Braket devices on AWS."""

from nodes.executors.base import ExecutionError, Executor

__all__ = ["ExecutionError", "Executor"]
