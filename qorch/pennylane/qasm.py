"""PennyLane operations as the OpenQASM 3 programs the pools run: pure, no I/O.

Every gate angle becomes an ``input float`` (``p0``, ``p1``, ... in order of appearance), so
circuits that differ only in their angles (the shifted tapes of parameter-shift, the points of a
batch) have the same source and travel as one program with many bindings. Noise channels become
Braket noise pragmas (the density-matrix pools run them), matrices ``#pragma braket unitary``;
both carry their numbers as literals, so they are part of a program's structure.

Qubit ``q[i]`` is wire ``wire_order[i]``: qubit 0 is the first wire, and the leftmost character of
the bitstrings and Pauli strings the platform returns, as in PennyLane's own wire order.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pennylane.operation import Channel, DecompositionUndefinedError, Operator
from pennylane.ops import QubitUnitary

#: PennyLane gates and the Braket OpenQASM gates that are the same matrix.
GATES: Mapping[str, str] = {
    "Hadamard": "h",
    "PauliX": "x",
    "PauliY": "y",
    "PauliZ": "z",
    "S": "s",
    "T": "t",
    "SX": "v",
    "Adjoint(S)": "si",
    "Adjoint(T)": "ti",
    "Adjoint(SX)": "vi",
    "RX": "rx",
    "RY": "ry",
    "RZ": "rz",
    "PhaseShift": "phaseshift",
    "CNOT": "cnot",
    "CY": "cy",
    "CZ": "cz",
    "SWAP": "swap",
    "ISWAP": "iswap",
    "PSWAP": "pswap",
    "ECR": "ecr",
    "IsingXX": "xx",
    "IsingYY": "yy",
    "IsingZZ": "zz",
    "IsingXY": "xy",
    "ControlledPhaseShift": "cphaseshift",
    "CPhaseShift00": "cphaseshift00",
    "CPhaseShift01": "cphaseshift01",
    "CPhaseShift10": "cphaseshift10",
    "Toffoli": "ccnot",
    "CSWAP": "cswap",
}

#: PennyLane channels and the Braket noise pragmas of the same Kraus operators (parameters in
#: the same order). Any other channel goes as ``#pragma braket noise kraus(...)``, among them
#: GeneralizedAmplitudeDamping: Braket's ``probability`` is one minus PennyLane's ``p``.
NOISE: Mapping[str, str] = {
    "BitFlip": "bit_flip",
    "PhaseFlip": "phase_flip",
    "DepolarizingChannel": "depolarizing",
    "AmplitudeDamping": "amplitude_damping",
    "PhaseDamping": "phase_damping",
}

#: Operations that change no measurement: barriers, snapshots (not taken), the identity and an
#: uncontrolled global phase. They are left out of programs.
IGNORED = frozenset({"Barrier", "Snapshot", "Identity", "GlobalPhase", "WireCut"})

#: Widest ``QubitUnitary`` (and Kraus channel) written as a pragma; wider ones are decomposed.
MAX_MATRIX_WIRES = 4

#: Every operation name a program may hold, for PennyLane's graph decomposition.
TARGET_GATES = frozenset(
    {*GATES, *NOISE, *IGNORED, "QubitUnitary", "QubitChannel", "GlobalPhase"} - {"WireCut"}
)


def supported(op: Operator) -> bool:
    """Whether :func:`to_program` writes ``op`` as it is (otherwise it is to be decomposed)."""
    if op.name in GATES or op.name in IGNORED:
        return True
    if op.name == "QubitUnitary":
        return len(op.wires) <= MAX_MATRIX_WIRES
    return isinstance(op, Channel) and len(op.wires) <= MAX_MATRIX_WIRES


def decomposition(op: Operator) -> list[Operator]:
    """PennyLane's decomposition of ``op``; for an operation without one (``BlockEncode``, say),
    its matrix as a ``QubitUnitary`` when narrow enough."""
    if op.has_decomposition:
        return list(op.decomposition())
    if op.has_matrix and len(op.wires) <= MAX_MATRIX_WIRES:
        return [QubitUnitary(op.matrix(), wires=op.wires)]
    raise DecompositionUndefinedError(f"{op.name} has neither a decomposition nor a matrix")


def is_noise(op: Operator) -> bool:
    """Whether ``op`` is a noise channel (it needs a density-matrix pool)."""
    return isinstance(op, Channel)


@dataclass(frozen=True)
class Program:
    """One circuit: its OpenQASM 3 source and the values of its inputs ``p0``, ``p1``, ..."""

    source: str
    values: tuple[float, ...]

    @property
    def binding(self) -> dict[str, float]:
        """The values as a job's binding: input name -> value."""
        return {input_name(i): v for i, v in enumerate(self.values)}


def input_name(index: int) -> str:
    """The name of the ``index``-th input of a program."""
    return f"p{index}"


def to_program(
    operations: Sequence[Operator],
    wire_order: Sequence[Hashable],
    width: int,
    measure: bool = False,
) -> Program:
    """The program of ``operations`` on ``width`` qubits, ``q[i]`` being ``wire_order[i]``.

    Every operation must be :func:`supported`. ``measure`` appends a measurement of every qubit
    (counts then have a bit for every qubit, not only the ones a gate touches).
    """
    if width < max(len(wire_order), 1):
        raise ValueError(f"{len(wire_order)} wires do not fit in {width} qubits")
    index = {wire: i for i, wire in enumerate(wire_order)}
    values: list[float] = []
    body: list[str] = []
    for op in operations:
        try:
            qubits = ", ".join(f"q[{index[w]}]" for w in op.wires)
        except KeyError as exc:
            raise ValueError(
                f"{op} acts on wire {exc.args[0]!r}, not in {list(wire_order)}"
            ) from exc
        if op.name in IGNORED:
            continue
        if op.name in GATES:
            names = []
            for p in op.parameters:
                names.append(input_name(len(values)))
                values.append(_real(p, op))
            angles = f"({', '.join(names)})" if names else ""
            body.append(f"{GATES[op.name]}{angles} {qubits};")
        elif op.name == "QubitUnitary":
            body.append(f"#pragma braket unitary({_matrix(op.matrix())}) {qubits}")
        elif op.name in NOISE:
            numbers = ", ".join(repr(_real(p, op)) for p in op.parameters)
            body.append(f"#pragma braket noise {NOISE[op.name]}({numbers}) {qubits}")
        elif isinstance(op, Channel):
            kraus = ", ".join(_matrix(k) for k in op.kraus_matrices())
            body.append(f"#pragma braket noise kraus({kraus}) {qubits}")
        else:
            raise ValueError(f"{op.name} has no OpenQASM form here; decompose it first")
    lines = ["OPENQASM 3.0;", *(f"input float {input_name(i)};" for i in range(len(values)))]
    lines.append(f"qubit[{width}] q;")
    lines += body
    if measure:
        lines += [f"bit[{width}] c;", "c = measure q;"]
    return Program(source="\n".join(lines) + "\n", values=tuple(values))


def _real(value: object, op: Operator) -> float:
    """A gate parameter as a float; a complex or batched one is refused."""
    array = np.asarray(value)
    if array.ndim or (np.iscomplexobj(array) and array.imag != 0):
        raise ValueError(f"{op.name}: parameter {value!r} is not a real number")
    return float(np.real(array))


def _matrix(matrix: object) -> str:
    """A matrix in Braket's pragma syntax: ``[[a, b + ci], ...]``."""
    rows = np.asarray(matrix, dtype=complex)
    return "[" + ", ".join("[" + ", ".join(_complex(z) for z in row) + "]" for row in rows) + "]"


def _complex(number: complex) -> str:
    """``a``, ``bim`` or ``a + bim`` (Braket's form), each part exact (``repr`` of a float)."""
    real, imag = float(number.real), float(number.imag)
    if imag == 0.0:
        return repr(real)
    if real == 0.0:
        return f"{imag!r}im"
    return f"{real!r} {'+' if imag > 0 else '-'} {abs(imag)!r}im"
