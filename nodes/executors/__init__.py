"""Backends that run a fragment's bindings: the local Braket simulators, Braket devices on AWS."""

from nodes.executors.base import ExecutionError, Executor

__all__ = ["ExecutionError", "Executor"]
