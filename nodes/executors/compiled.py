"""One OpenQASM program interpreted once, then run for many bindings on Braket's own simulator.

``LocalSimulator.run`` parses and interprets the OpenQASM source again for every binding and
wraps each answer in task bookkeeping; for small circuits that is over 90% of the time. A
fragment carries one program and many bindings, so :func:`compile_program` does the
binding-independent work once, with the same Braket code ``BaseLocalSimulator.run_openqasm``
uses (parser, :class:`Interpreter` and :class:`ProgramContext`, contiguous qubit mapping,
validation, result types), with every ``input`` left as a symbol. :meth:`CompiledProgram.run`
then builds only the gates whose parameters are inputs, with the same gate constructors and the
same input casts the interpreter applies, and evolves Braket's ``StateVectorSimulation`` /
``DensityMatrixSimulation``. Exact results (``shots == 0``) are therefore bit-identical to
``LocalSimulator.run``'s; sampled ones come from the same distribution.

A program is supported when every gate parameter is a constant, an input, or a negated input,
and it has no classical control flow, subroutines or ``output``\\s. Anything else raises
:class:`Unsupported`, and the caller runs it with ``LocalSimulator.run``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from braket.default_simulator.openqasm._helpers.casting import cast_to, wrap_value_into_literal
from braket.default_simulator.openqasm.interpreter import Interpreter
from braket.default_simulator.openqasm.parser import openqasm_ast as ast
from braket.default_simulator.openqasm.parser.openqasm_parser import parse
from braket.default_simulator.openqasm.program_context import BRAKET_GATES, ProgramContext
from braket.default_simulator.result_types import TargetedResultType
from braket.default_simulator.simulator import BaseLocalSimulator
from braket.device_schema import DeviceActionType
from braket.tasks import GateModelQuantumTaskResult

#: Top-level statements whose meaning cannot depend on an input's value (given the checks on
#: gate parameters below). Control flow, subroutines, assignments and boxes are not here: with
#: inputs left as symbols the interpreter could take a branch a bound value would not.
SUPPORTED_STATEMENTS: tuple[type[ast.Statement], ...] = (
    ast.Include,
    ast.IODeclaration,
    ast.QubitDeclaration,
    ast.ConstantDeclaration,
    ast.QuantumGateDefinition,
    ast.QuantumGate,
    ast.QuantumPhase,
    ast.QuantumBarrier,
    ast.QuantumReset,
    ast.QuantumMeasurementStatement,
    ast.ClassicalDeclaration,
    ast.Pragma,
)


class Unsupported(Exception):
    """The program cannot be run exactly by the compiled path; run it with LocalSimulator."""


@dataclass(frozen=True)
class RunResult:
    """What the executor reads from one run: result type values and, with shots, counts."""

    values: list[Any]
    measurement_counts: dict[str, int] | None = None


@dataclass(frozen=True)
class BoundParameter:
    """A gate parameter that is an input's value (negated when ``negate``)."""

    name: str
    negate: bool = False


@dataclass(frozen=True)
class ParametricGate:
    """A gate to build per binding: ``BRAKET_GATES[name](targets, *params, ...)``."""

    index: int
    name: str
    targets: tuple[int, ...]
    params: tuple[Any, ...]  # numbers, or BoundParameter
    ctrl_modifiers: tuple[int, ...]
    power: Any


class _RecordingContext(ProgramContext):
    """Braket's ProgramContext that also records the gates whose parameters are symbolic."""

    def __init__(self, simulator: BaseLocalSimulator) -> None:
        super().__init__(simulator=simulator)
        self.recorded: list[tuple[int, str, tuple[int, ...], Any, list[int], Any]] = []

    def add_gate_instruction(
        self,
        gate_name: str,
        target: tuple[int, ...],
        params: Any,
        ctrl_modifiers: list[int],
        power: int,
    ) -> None:
        symbolic = any(_free_symbols(p) for p in params)
        if _free_symbols(power) or any(_free_symbols(c) for c in ctrl_modifiers):
            raise Unsupported(f"gate {gate_name!r} has a modifier that depends on an input")
        if symbolic:
            self.recorded.append(
                (len(self._circuit.instructions), gate_name, target, params, ctrl_modifiers, power)
            )
        super().add_gate_instruction(gate_name, target, params, ctrl_modifiers, power)


class CompiledProgram:
    """A program's circuit with its input-dependent gates left open; :meth:`run` binds them."""

    def __init__(
        self,
        simulator: BaseLocalSimulator,
        shots: int,
        *,
        instructions: Sequence[Any],
        parametric: Sequence[ParametricGate],
        input_types: Mapping[str, Any],
        context: ProgramContext,
        qubit_count: int,
        result_types: Sequence[Any],
        results_ir: str,
        basis_rotations: Sequence[Any],
        measured_qubits: Sequence[int],
        selected_qubits: Sequence[int] | None,
        qubit_map: Mapping[int, int] | None = None,
    ) -> None:
        self._simulator = simulator
        self.shots = shots
        self._instructions = list(instructions)
        self._parametric = tuple(parametric)
        self._input_types = dict(input_types)
        self._context = context
        self.qubit_count = qubit_count
        self._result_types = list(result_types)
        self._results_ir = results_ir
        self._basis_rotations = list(basis_rotations)
        self._measured_qubits = list(measured_qubits)
        self._selected = None if selected_qubits is None else np.asarray(selected_qubits)
        #: Whether the program measures (``measure``): its state is then not one pure vector.
        self.measures = selected_qubits is not None
        #: The program's qubits (declaration order) -> the simulation's contiguous qubits.
        self.qubit_map: dict[int, int] = dict(qubit_map or {})
        self.input_names = frozenset(
            p.name for g in self._parametric for p in g.params if isinstance(p, BoundParameter)
        )

    def run(self, inputs: Mapping[str, float]) -> RunResult:
        """Simulate one binding; raises ``NameError`` for a missing input, as Braket does."""
        values = self.cast_inputs(inputs)
        operations = list(self._instructions)
        for gate in self._parametric:
            operations[gate.index] = self.gate_operation(gate, values)
        simulation = self._simulator.initialize_simulation(
            qubit_count=self.qubit_count, shots=self.shots, batch_size=1
        )
        simulation.evolve(operations)
        if not self.shots:
            return RunResult([rt.calculate(simulation) for rt in self._result_types])
        if self._basis_rotations:
            simulation.evolve(self._basis_rotations)
        measurements = self._measurements(simulation.retrieve_samples())
        result_values = []
        if self._results_ir:
            result_values = [
                rt.value
                for rt in GateModelQuantumTaskResult._calculate_result_types(
                    self._results_ir, measurements, self._measured_qubits
                )
            ]
        return RunResult(result_values, _counts(measurements))

    @property
    def instructions(self) -> list[Any]:
        """Braket's operations in order; those at the :attr:`parametric` gates' indices are
        placeholders that :meth:`gate_operation` builds per binding."""
        return list(self._instructions)

    @property
    def parametric(self) -> tuple[ParametricGate, ...]:
        """The gates whose parameters are inputs."""
        return self._parametric

    def cast_inputs(self, inputs: Mapping[str, float]) -> dict[str, Any]:
        """Every input the gates use, cast as the interpreter casts it; raises ``NameError``
        for a missing input, as Braket does."""
        missing = sorted(self.input_names - inputs.keys())
        if missing:
            raise NameError(f"Missing input variable '{missing[0]}'.")
        return {name: self._cast(name, inputs[name]) for name in self.input_names}

    def gate_operation(self, gate: ParametricGate, values: Mapping[str, Any]) -> Any:
        """Braket's operation for ``gate`` with the inputs' (cast) ``values``."""
        params = np.array(
            [
                self._context.handle_parameter_value(
                    (-values[p.name] if p.negate else values[p.name])
                    if isinstance(p, BoundParameter)
                    else p
                )
                for p in gate.params
            ]
        )
        return BRAKET_GATES[gate.name](
            gate.targets,
            *params,
            ctrl_modifiers=list(gate.ctrl_modifiers),
            power=gate.power,
        )

    def _cast(self, name: str, value: float) -> Any:
        """The value the interpreter gives input ``name`` (``input angle`` wraps, for one)."""
        declared = self._input_types.get(name)
        if type(value) is float and isinstance(declared, ast.FloatType) and declared.size is None:
            return value  # what cast_to gives a plain ``input float``: float(value)
        literal = wrap_value_into_literal(value)
        return literal.value if declared is None else cast_to(declared, literal).value

    def _measurements(self, samples: np.ndarray) -> np.ndarray:
        """Shots x qubits bits, as ``BaseLocalSimulator._formatted_measurements`` lays them out."""
        n = self.qubit_count
        shifts = np.arange(n - 1, -1, -1, dtype=np.int64)
        bits = (np.asarray(samples, dtype=np.int64)[:, None] >> shifts) & 1
        if self._selected is None:
            return bits
        inside = self._selected[self._selected < n]
        outside = int((self._selected >= n).sum())
        return np.pad(bits[:, inside], ((0, 0), (0, outside)))


def compile_program(simulator: BaseLocalSimulator, source: str, shots: int) -> CompiledProgram:
    """Interpret ``source`` once with its inputs as symbols, as ``run_openqasm`` would.

    Raises :class:`Unsupported` for a program this path cannot run exactly (including any
    program Braket rejects: the caller's fallback then reports Braket's own error).
    """
    try:
        return _compile(simulator, source, shots)
    except Unsupported:
        raise
    except Exception as exc:  # Braket's own errors: let LocalSimulator.run report them
        raise Unsupported(f"{type(exc).__name__}: {exc}") from exc


def _compile(simulator: BaseLocalSimulator, source: str, shots: int) -> CompiledProgram:
    program = parse(source)
    input_types: dict[str, Any] = {}
    for statement in program.statements:
        if not isinstance(statement, SUPPORTED_STATEMENTS):
            raise Unsupported(f"statement {type(statement).__name__} is not supported")
        if isinstance(statement, ast.IODeclaration):
            if statement.io_identifier != ast.IOKeyword.input:
                raise Unsupported("output declarations are not supported")
            input_types[statement.identifier.name] = statement.type
        if isinstance(statement, ast.ClassicalDeclaration) and not isinstance(
            statement.init_expression, ast.QuantumMeasurement | None
        ):
            raise Unsupported("classical declarations with a value are not supported")

    context = _RecordingContext(simulator)
    context._shots = shots
    Interpreter(context).visit(program)
    if context.is_branched:
        raise Unsupported("mid-circuit measurements are not supported")

    # What run_openqasm does before simulating, once for every binding.
    circuit = context.circuit
    circuit.validate_single_measured_register()
    qubit_map = BaseLocalSimulator._map_circuit_to_contiguous_qubits(circuit)
    qubit_count = circuit.num_qubits
    measured_qubits = circuit.measured_qubits
    mapped_measured = [qubit_map[q] for q in measured_qubits] if measured_qubits else None
    simulator._validate_ir_results_compatibility(
        circuit.results, device_action_type=DeviceActionType.OPENQASM
    )
    simulator._validate_ir_instructions_compatibility(
        circuit, device_action_type=DeviceActionType.OPENQASM
    )
    BaseLocalSimulator._validate_shots_and_ir_results(shots, circuit.results, qubit_count)

    parametric = [_parametric_gate(qubit_map, *record) for record in context.recorded]
    open_indices = {g.index for g in parametric}
    for index, instruction in enumerate(circuit.instructions):
        if index not in open_indices and _depends_on_inputs(instruction):
            raise Unsupported(f"{type(instruction).__name__} depends on an input")

    result_types: list[Any] = []
    results_ir = ""
    basis_rotations: list[Any] = []
    if not shots:
        result_types = BaseLocalSimulator._translate_result_types(circuit.results)
        BaseLocalSimulator._validate_result_types_qubits_exist(
            [rt for rt in result_types if isinstance(rt, TargetedResultType)], qubit_count
        )
    else:
        basis_rotations = list(circuit.basis_rotation_instructions)
        if circuit.results:
            results_ir = json.dumps({"results": [r.dict() for r in circuit.results]})
    return CompiledProgram(
        simulator,
        shots,
        instructions=circuit.instructions,
        parametric=parametric,
        input_types=input_types,
        context=context,
        qubit_count=qubit_count,
        result_types=result_types,
        results_ir=results_ir,
        basis_rotations=basis_rotations,
        measured_qubits=measured_qubits or list(range(qubit_count)),
        selected_qubits=mapped_measured,
        qubit_map=qubit_map,
    )


def _parametric_gate(
    qubit_map: Mapping[int, int],
    index: int,
    name: str,
    target: tuple[int, ...],
    params: Any,
    ctrl_modifiers: list[int],
    power: Any,
) -> ParametricGate:
    return ParametricGate(
        index=index,
        name=name,
        targets=tuple(qubit_map[q] for q in target),
        params=tuple(_parameter(p) for p in params),
        ctrl_modifiers=tuple(ctrl_modifiers),
        power=power,
    )


def _parameter(value: Any) -> Any:
    """A number as is; an input or a negated input as a :class:`BoundParameter`."""
    if not _free_symbols(value):
        return value
    if isinstance(value, sympy.Symbol):
        return BoundParameter(value.name)
    if (
        isinstance(value, sympy.Mul)
        and len(value.args) == 2
        and value.args[0] == -1
        and isinstance(value.args[1], sympy.Symbol)
    ):
        return BoundParameter(value.args[1].name, negate=True)
    raise Unsupported(f"gate parameter {value} is an expression of inputs")


def _free_symbols(value: Any) -> bool:
    if isinstance(value, sympy.Basic):
        return bool(value.free_symbols)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return any(_free_symbols(v) for v in value.flat)
    return False


def _depends_on_inputs(instruction: Any) -> bool:
    """Whether an instruction built once holds a symbol (a phase or noise from an input)."""
    for value in vars(instruction).values():
        if _free_symbols(value):
            return True
        if isinstance(value, list | tuple) and any(_free_symbols(v) for v in value):
            return True
    return False


def _counts(measurements: np.ndarray) -> dict[str, int]:
    """Counts per bitstring (qubit 0 leftmost), as ``measurement_counts`` reports them."""
    shots, width = measurements.shape
    if not width:
        return {"": shots}
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    states, counts = np.unique(measurements @ (1 << shifts), return_counts=True)
    # The bitstrings as ASCII rows, read as fixed-width strings: no format() per state.
    digits = (((states[:, None] >> shifts) & 1) + ord("0")).astype(np.uint8)
    keys = digits.view(f"S{width}").ravel().astype(f"U{width}").tolist()
    return dict(zip(keys, counts.tolist(), strict=True))
