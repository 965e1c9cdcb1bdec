"""The circuit as cutting sees it: a flat list of operations read from OpenQASM 3.

Braket's SDK interprets the program (custom gates, loops and broadcasts unrolled) and keeps the
``input`` parameters symbolic, so every operation can be written back as OpenQASM 3 that takes
the same inputs. Pure CPU work, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sympy
from braket.circuits import Circuit, Instruction
from braket.circuits.measure import Measure
from braket.circuits.serialization import (
    IRType,
    OpenQASMSerializationProperties,
    QubitReferenceType,
)
from braket.parametric import FreeParameterExpression

from qorchestra.cutting import signs
from qorchestra.qasm import ProgramError, analyze

#: An angle: a number, or an expression of the program's inputs.
Angle: TypeAlias = float | FreeParameterExpression

_VIRTUAL = OpenQASMSerializationProperties(QubitReferenceType.VIRTUAL)
#: Names Braket's SDK refuses as free parameters.
_RESERVED = frozenset({"q", "b"})


class CuttingError(ValueError):
    """The program cannot be cut as asked; the message says why."""


@dataclass(frozen=True)
class Operation:
    """One instruction and every qubit it touches (controls, then targets)."""

    instruction: Instruction
    qubits: tuple[int, ...]


@dataclass(frozen=True)
class CircuitIR:
    """A program as an ordered list of operations on qubits ``0 .. qubits-1``."""

    qubits: int
    inputs: tuple[str, ...]  # the program's `input` parameters, in declaration order
    operations: tuple[Operation, ...]
    #: (name used inside, input name) for inputs Braket's SDK reserves ("q", "b")
    aliases: tuple[tuple[str, str], ...] = ()


def read_circuit(source: str) -> CircuitIR:
    """Interpret ``source`` with Braket, keeping ``input`` parameters symbolic.

    Raises CuttingError for a program Braket cannot read or one that measures or declares
    result types (the cut decides what is measured).
    """
    try:
        info = analyze(source)
    except ProgramError as exc:
        raise CuttingError(str(exc)) from exc
    aliases = {name: f"qorch_input_{i}" for i, name in enumerate(info.inputs)}
    renamed = {n: a for n, a in aliases.items() if n in _RESERVED}
    try:
        circuit = Circuit.from_ir(_rename(source, renamed))
    except Exception as exc:  # Braket raises many unrelated types
        raise CuttingError(f"Braket could not read the program: {exc}") from exc
    if circuit.result_types:
        raise CuttingError("a program to cut must not declare result types")
    operations = []
    for instruction in circuit.instructions:
        if isinstance(instruction.operator, Measure):
            raise CuttingError("a program to cut must not measure (its observables decide that)")
        qubits = tuple(int(q) for q in (*instruction.control, *instruction.target))
        if not qubits:  # a global phase changes no expectation value
            continue
        operations.append(Operation(instruction, qubits))
    width = max([info.qubits, *(q + 1 for op in operations for q in op.qubits)])
    return CircuitIR(
        qubits=width,
        inputs=info.inputs,
        operations=tuple(operations),
        aliases=tuple((a, n) for n, a in renamed.items()),
    )


def _rename(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each identifier in ``names`` replaced."""
    for old, new in names.items():
        text = re.sub(rf"(?<![\w$.]){re.escape(old)}(?!\w)", new, text)
    return text


def remap(instruction: Instruction, mapping: Mapping[int, int]) -> Instruction:
    """The same instruction on other qubits (``mapping``: old index -> new index)."""
    return Instruction(
        instruction.operator,
        target=[mapping[int(q)] for q in instruction.target],
        control=[mapping[int(q)] for q in instruction.control],
        control_state=instruction.control_state,
        power=instruction.power,
    )


@dataclass(frozen=True)
class SignMeasure:
    """A signed mid-circuit measurement of local qubit ``qubit`` (:mod:`.signs`)."""

    qubit: int


def to_openqasm(
    instructions: Sequence[Instruction | SignMeasure],
    qubits: int,
    circuit: CircuitIR,
    *,
    header: str = "",
) -> str:
    """OpenQASM 3 source declaring the inputs of ``circuit`` and ``qubits`` qubits, then the
    instructions (qubit ``i`` is ``q[i]``, or ``qubits[i]`` when an input is named ``q``).
    Signed measurements write the bits of a ``qorch_sign`` register in order."""
    register = "qubits" if "q" in circuit.inputs else "q"
    lines = ["OPENQASM 3.0;"]
    if header:
        lines.extend(f"// {line}" for line in header.splitlines())
    lines.extend(f"input float {name};" for name in circuit.inputs)
    lines.append(f"qubit[{qubits}] {register};")
    measured = sum(isinstance(i, SignMeasure) for i in instructions)
    if measured:
        lines.append(signs.declaration(measured))
    body_lines = []
    bit = 0
    for item in instructions:
        if isinstance(item, SignMeasure):
            body_lines.append(signs.measurement(bit, f"{register}[{item.qubit}]"))
            bit += 1
            continue
        text = str(item.to_ir(ir_type=IRType.OPENQASM, serialization_properties=_VIRTUAL))
        if register != "q":
            text = re.sub(r"(?<![\w$.])q\[", f"{register}[", text)
        body_lines.append(_rename(text, dict(circuit.aliases)))
    body = "\n".join(body_lines)
    return "\n".join(lines) + "\n" + (body + "\n" if body else "")


class AngleFunction:
    """An angle evaluated quickly for many bindings (compiled once with sympy)."""

    def __init__(self, angle: Angle, aliases: Mapping[str, str] | None = None) -> None:
        """``aliases`` maps names used inside the expression to the input names of bindings."""
        aliases = aliases or {}
        if isinstance(angle, FreeParameterExpression):
            expression: Any = angle.expression
        else:
            expression = angle
        if isinstance(expression, sympy.Expr):
            symbols = sorted(expression.free_symbols, key=str)
            self._names = [aliases.get(str(s), str(s)) for s in symbols]
            self._function = sympy.lambdify(symbols, expression, "math")
            self._constant: float | None = None
        else:
            self._names = []
            self._constant = float(expression)

    @property
    def constant(self) -> float | None:
        """The value when the angle depends on no input, else None."""
        return self._constant

    def __call__(self, binding: Mapping[str, float]) -> float:
        """The angle's value for one binding of the program's inputs."""
        if self._constant is not None:
            return self._constant
        try:
            value = float(self._function(*(binding[name] for name in self._names)))
        except KeyError as exc:
            raise CuttingError(f"binding has no value for input {exc.args[0]!r}") from exc
        if not math.isfinite(value):
            raise CuttingError(f"an angle evaluates to {value} for binding {dict(binding)}")
        return value
