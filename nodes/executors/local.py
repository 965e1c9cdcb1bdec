"""The Amazon Braket local simulators: ``braket_sv`` (pool local-sv), ``braket_dm`` (local-dm)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from braket.default_simulator.openqasm.parser.openqasm_parser import QASM3ParsingError
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import ExecutionError
from nodes.program import ProgramError, prepare_fragment
from proto.qorch.v1 import fragments_pb2 as pb

logger = logging.getLogger(__name__)

BACKENDS = ("braket_sv", "braket_dm")

#: Errors Braket raises for a program or inputs it cannot run: running again cannot help.
PROGRAM_ERRORS: tuple[type[BaseException], ...] = (
    QASM3ParsingError,
    ValueError,  # includes pydantic validation errors
    TypeError,
    NameError,
    IndexError,
    KeyError,
    NotImplementedError,
    SyntaxError,
)


class LocalExecutor:
    """Runs fragments on one long-lived :class:`braket.devices.LocalSimulator`, in this process.

    Tasks run one after another. ``LocalSimulator.run_batch`` is deliberately not used: it forks
    a multiprocessing pool from a process that holds librdkafka's threads and sockets, and the
    forked children hung the embedded broker's connections (the demo stalled after its first
    fragments). A pool's throughput comes from running more agents, one process each.
    """

    def __init__(self, backend: str = "braket_sv") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown local backend {backend!r}; expected one of {BACKENDS}")
        self._backend = backend
        self._device = LocalSimulator(backend)

    @property
    def name(self) -> str:
        """``braket_sv`` or ``braket_dm``."""
        return self._backend

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Run every binding; one result per binding, in order."""
        try:
            prepared = prepare_fragment(fragment)
        except ProgramError as exc:
            raise ExecutionError(str(exc), retryable=False, error_type="ProgramError") from exc
        inputs = [binding_inputs(b, i) for i, b in enumerate(fragment.bindings)]
        if not prepared.runs:  # nothing to simulate: every observable is the identity
            return [prepared.binding_result([]) for _ in inputs]
        programs = [
            Program(source=r.source, inputs=values) for values in inputs for r in prepared.runs
        ]
        results = self._run(programs, fragment.shots)
        return prepared.binding_results(results)

    def _run(self, programs: Sequence[Program], shots: int) -> list[GateModelQuantumTaskResult]:
        try:
            return [self._device.run(p, shots=shots).result() for p in programs]
        except PROGRAM_ERRORS as exc:
            raise ExecutionError(
                _message(exc), retryable=False, error_type=type(exc).__name__
            ) from exc

    def close(self) -> None:
        """Nothing to release: the simulator holds no outside resources."""


def binding_inputs(binding: pb.Binding, index: int) -> dict[str, float]:
    """The binding's values as Braket inputs; non-finite values are rejected."""
    values = dict(binding.values)
    for name, value in values.items():
        if not math.isfinite(value):
            raise ExecutionError(
                f"binding {index}: input {name!r} is {value}, not a finite number",
                retryable=False,
                error_type="InvalidInput",
            )
    return values


def _message(exc: BaseException) -> str:
    """Braket's message; KeyError's str() would quote it."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or f"Braket rejected the program ({type(exc).__name__})"
