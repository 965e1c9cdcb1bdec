"""The Amazon Braket local simulators: ``braket_sv`` (pool local-sv), ``braket_dm`` (local-dm)."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.adjoint import VectorizedProgram, binding_results
from nodes.executors.base import ExecutionError
from nodes.executors.branches import with_branches
from nodes.executors.compiled import CompiledProgram, Unsupported, compile_program
from nodes.executors.kernels import ThreadingLayer, limit_kernel_threads, select_threading_layer
from nodes.program import PreparedProgram, ProgramError, prepare_fragment
from proto.qorch.v1 import fragments_pb2 as pb

logger = logging.getLogger(__name__)

BACKENDS = ("braket_sv", "braket_dm")

#: Compiled programs an executor keeps (a training job sends the same program again and again).
COMPILED_CACHE_SIZE = 32

#: Errors of the machine rather than of the program (memory, files, sockets): another attempt,
#: here or on another node, may succeed. Everything else the simulator raises while running a
#: program is deterministic - the same program and inputs fail the same way on every node:
#: Braket's validation (ValueError, pydantic's errors), its NotImplementedError for what it cannot
#: run, OpenQASM errors, and the numba typing errors of its kernels (``TypingError``).
#: KeyboardInterrupt, SystemExit and the like are not Exceptions and are never caught here.
RESOURCE_ERRORS: tuple[type[Exception], ...] = (MemoryError, OSError)


class LocalExecutor:
    """Runs fragments on one long-lived :class:`braket.devices.LocalSimulator`, in this process.

    A fragment's program is interpreted once and run for every binding with Braket's own
    simulator code (:mod:`nodes.executors.compiled`); a program that path does not support runs
    with ``LocalSimulator.run``, one binding at a time, as does any fragment the compiled path
    fails on (so Braket's own error reaches the user). ``compiled=False`` always takes the plain
    path. An error the simulator raises for a binding fails the fragment with Braket's message
    and the binding's index, for good (the same program fails the same way everywhere) unless it
    is one of :data:`RESOURCE_ERRORS`. Compiled programs are kept warm, keyed by source and
    shots. ``threads`` caps the threads of Braket's numba kernels (used from 11 qubits on) while
    this executor runs; 0 leaves numba's default. ``threading_layer`` is numba's threading layer
    for those kernels, chosen when the executor is built (:mod:`nodes.executors.kernels`). The
    math depends on neither: every amplitude is computed the same way.

    Exact training fragments (an ``Encoding``, shots 0, expectations) on ``braket_sv`` run all
    their bindings as one vectorised batch over Braket's gate matrices
    (:class:`~nodes.executors.adjoint.VectorizedProgram`: equal to Braket's own simulation to
    rounding, 1e-15, not bit for bit), and adjoint fragments (:meth:`execute_adjoint`) too;
    ``vectorized=False`` runs them gate by gate like any other fragment.

    Tasks run one after another. ``LocalSimulator.run_batch`` is deliberately not used: it forks
    a multiprocessing pool from a process that holds librdkafka's threads and sockets, and the
    forked children hung the embedded broker's connections (the demo stalled after its first
    fragments). A pool's throughput comes from running more agents, one process each.
    """

    def __init__(
        self,
        backend: str = "braket_sv",
        *,
        compiled: bool = True,
        threads: int = 0,
        threading_layer: ThreadingLayer = "omp",
        vectorized: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown local backend {backend!r}; expected one of {BACKENDS}")
        if threads < 0:
            raise ValueError(f"threads must be 0 (numba's default) or more, not {threads}")
        self._backend = backend
        self._threads = threads
        #: The numba threading layer this process's kernels use.
        self.threading_layer = select_threading_layer(threading_layer)
        self._device = LocalSimulator(backend)
        self._use_compiled = compiled
        self._compiled: OrderedDict[tuple[str, int], CompiledProgram | None] = OrderedDict()
        self._vectorize = vectorized
        self._vectorized: OrderedDict[
            tuple[str, tuple[str, ...], tuple[str, ...]], VectorizedProgram
        ] = OrderedDict()
        #: Fragments run by the compiled path and by LocalSimulator.run (for logs and benches).
        self.compiled_fragments = 0
        self.plain_fragments = 0
        #: Fragments run as one vectorised batch (:meth:`_batches`, and adjoint ones).
        self.vectorized_fragments = 0

    @property
    def name(self) -> str:
        """``braket_sv`` or ``braket_dm``."""
        return self._backend

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Run every binding; one result per binding, in order."""
        if self._threads:
            limit_kernel_threads(self._threads)
        prepared, inputs = prepared_work(fragment)
        if not prepared.runs:  # nothing to simulate: every observable is the identity
            return [prepared.binding_result([]) for _ in inputs]
        if self._batches(fragment):
            try:
                observables = tuple(with_branches(fragment).observables)  # as prepared
                program = self._vectorized_program(prepared.runs[0].source, (), observables)
                rows = program.expectations(inputs)
            except Exception as exc:  # the paths below report what is wrong
                logger.debug("vectorised run failed (%s); running gate by gate", exc)
            else:
                self.vectorized_fragments += 1
                return [
                    pb.BindingResult(expectations=pb.Expectations(values=row.tolist()))
                    for row in rows
                ]
        compiled = [self._compiled_program(r.source, fragment.shots) for r in prepared.runs]
        if all(c is not None for c in compiled):
            try:
                fast = [c.run(values) for values in inputs for c in compiled if c is not None]
            except Exception as exc:  # LocalSimulator.run below reports what is wrong
                logger.debug("compiled run failed (%s); running with LocalSimulator", exc)
            else:
                self.compiled_fragments += 1
                return prepared.binding_results(fast)
        programs = [
            Program(source=r.source, inputs=values) for values in inputs for r in prepared.runs
        ]
        results = self._run(programs, fragment.shots, len(prepared.runs))
        self.plain_fragments += 1
        return prepared.binding_results(results)

    def execute_adjoint(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Expectations and their derivatives by every weight input, per binding (one per
        sample), by the adjoint method (:mod:`nodes.executors.adjoint`); ``braket_sv`` and
        exact expectations only."""
        if self._backend != "braket_sv" or fragment.shots:
            raise ExecutionError(
                f"adjoint gradients need the state-vector simulator and shots 0 (this is "
                f"{self._backend}, shots {fragment.shots}); use the parameter_shift gradient",
                retryable=False,
                error_type="AdjointUnsupported",
            )
        if self._threads:
            limit_kernel_threads(self._threads)
        prepared, inputs = prepared_work(fragment)
        weights = tuple(fragment.encoding.weight_inputs)
        observables = tuple(fragment.observables)
        if not prepared.runs:  # every observable is the identity: 1, and flat
            return binding_results(
                np.ones((len(inputs), len(observables))),
                np.zeros((len(inputs), len(weights), len(observables))),
            )
        program = self._vectorized_program(prepared.runs[0].source, weights, observables)
        try:
            expectations, derivatives = program.adjoint(inputs)
        except ExecutionError:
            raise
        except Exception as exc:
            raise simulator_failure(exc, 0) from exc
        self.vectorized_fragments += 1
        return binding_results(expectations, derivatives)

    def _batches(self, fragment: pb.Fragment) -> bool:
        """Whether the fragment's bindings run as one vectorised batch: an exact training
        fragment (it has an encoding) on the state-vector simulator. Other fragments keep
        Braket's own simulation, bit-identical to ``LocalSimulator.run``."""
        return (
            self._vectorize
            and self._backend == "braket_sv"
            and not fragment.shots
            and fragment.result_kind == pb.RESULT_KIND_EXPECTATION
            and fragment.HasField("encoding")
        )

    def _vectorized_program(
        self, source: str, weights: tuple[str, ...], observables: tuple[str, ...]
    ) -> VectorizedProgram:
        """``source`` as a :class:`VectorizedProgram` differentiating ``weights`` (cached,
        like compiled programs); a non-retryable ExecutionError where it cannot be one."""
        key = (source, weights, observables)
        if key in self._vectorized:
            self._vectorized.move_to_end(key)
            return self._vectorized[key]
        try:
            compiled = compile_program(self._device._delegate, source, 0)
        except Unsupported as exc:
            raise ExecutionError(
                f"adjoint gradients cannot run this program ({exc}); use the parameter_shift "
                "gradient",
                retryable=False,
                error_type="AdjointUnsupported",
            ) from exc
        program = VectorizedProgram(compiled, weights, observables)
        self._vectorized[key] = program
        if len(self._vectorized) > COMPILED_CACHE_SIZE:
            self._vectorized.popitem(last=False)
        return program

    def _compiled_program(self, source: str, shots: int) -> CompiledProgram | None:
        """The compiled program for ``source`` (cached), or None where it is not supported."""
        if not self._use_compiled:
            return None
        key = (source, shots)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        try:
            program: CompiledProgram | None = compile_program(self._device._delegate, source, shots)
        except Unsupported as exc:
            logger.info("program runs with LocalSimulator.run: %s", exc)
            program = None
        self._compiled[key] = program
        if len(self._compiled) > COMPILED_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return program

    def _run(
        self, programs: Sequence[Program], shots: int, runs_per_binding: int
    ) -> list[GateModelQuantumTaskResult]:
        """Run ``programs`` (``runs_per_binding`` consecutive ones per binding) in order."""
        results = []
        for k, program in enumerate(programs):
            try:
                results.append(self._device.run(program, shots=shots).result())
            except Exception as exc:
                raise simulator_failure(exc, k // runs_per_binding) from exc
        return results

    def close(self) -> None:
        """Nothing to release: the simulator holds no outside resources."""


def prepared_work(fragment: pb.Fragment) -> tuple[PreparedProgram, list[dict[str, float]]]:
    """The fragment's program prepared for its runs, and each binding's inputs. A program or
    binding the agent cannot run fails the fragment for good (ExecutionError, not retryable):
    running it again would fail again."""
    try:
        prepared = prepare_fragment(with_branches(fragment))
    except ProgramError as exc:
        raise ExecutionError(str(exc), retryable=False, error_type="ProgramError") from exc
    return prepared, [binding_inputs(b, i) for i, b in enumerate(fragment.bindings)]


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


def simulator_failure(exc: Exception, binding: int) -> ExecutionError:
    """How an error the simulator raised running binding ``binding`` fails the fragment: with
    Braket's message, and retryable only for a :data:`RESOURCE_ERRORS` one."""
    return ExecutionError(
        f"binding {binding}: {_message(exc)}",
        retryable=isinstance(exc, RESOURCE_ERRORS),
        error_type=type(exc).__name__,
    )


def _message(exc: BaseException) -> str:
    """Braket's message; KeyError's str() would quote it."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or f"Braket rejected the program ({type(exc).__name__})"
