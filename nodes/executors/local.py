"""The Amazon Braket local simulators: ``braket_sv`` (pool local-sv), ``braket_dm`` (local-dm)."""

from __future__ import annotations

import logging
import math
import os
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
    """Runs fragments on one long-lived :class:`braket.devices.LocalSimulator`.

    Fragments with at least ``parallel_threshold`` tasks (bindings times runs) go through
    ``LocalSimulator.run_batch``, which spreads them over ``max_parallel`` worker processes;
    smaller ones run in a loop in this process, where the pool's start-up would cost more than
    it saves. 64 bindings of a 6-qubit circuit on 2 cores: run_batch about 300 ms, loop 500 ms;
    one binding: run_batch 30 ms, loop 10 ms.
    """

    def __init__(
        self,
        backend: str = "braket_sv",
        *,
        parallel_threshold: int = 8,
        max_parallel: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown local backend {backend!r}; expected one of {BACKENDS}")
        self._backend = backend
        self._device = LocalSimulator(backend)
        self._parallel_threshold = parallel_threshold
        self._max_parallel = max_parallel or os.cpu_count() or 1

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
            if len(programs) >= self._parallel_threshold and self._max_parallel > 1:
                batch = self._device.run_batch(
                    list(programs), shots=shots, max_parallel=self._max_parallel
                )
                return list(batch.results())
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
