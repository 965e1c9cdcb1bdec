"""Programs compiled to a device's native gates, as the device's own compiler would compile
them: a QPU runs any gate of its ``supportedOperations`` outside a verbatim box, and only its
native gates inside one. Braket's ``LocalEmulator`` has no compiler, so an emulated device needs
this one to run what the real device would.

Each supported gate is rewritten exactly (up to a global phase) in rotations and one
entangling gate, then in the native gates of the device's family:

- IQM (``prx``, ``cz``): ``rx(t) = prx(t, 0)``, ``ry(t) = prx(t, pi/2)``, and ``rz`` as ``ry``,
  ``rx``, ``ry`` (a physical rotation; the real device tracks it virtually);
- IonQ (``gpi``, ``gpi2``, ``zz``): ``rz(t) = gpi(0)`` then ``gpi(t/2)``, and ``rx``, ``ry`` as
  ``rz`` between two ``gpi2``.

Angles stay expressions of the program's inputs (every rewrite is linear in them), so a program
is compiled once and bound per binding. Gates inside a verbatim box are left as written: the
emulator then checks that they are native. What cannot be compiled (a gate with control or
power modifiers other than the plain forms, a native gate set of another family) is left as
written, and the emulator refuses it with its own message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from braket.circuits import Circuit, Instruction, gates
from braket.circuits.compiler_directives import EndVerbatimBox, StartVerbatimBox
from braket.circuits.gate import Gate

from qorchestra.devices.profiles import IQM, DeviceGates

#: An angle: a number, or an expression of the program's inputs.
Angle = Any

PI = math.pi


@dataclass(frozen=True)
class _Op:
    """One operation of the intermediate form: ``rx``/``ry``/``rz`` on one qubit, ``cz`` or
    ``zz`` (``exp(-i angle/2 Z⊗Z)``) on two."""

    name: str
    qubits: tuple[int, ...]
    angle: Angle = 0.0


def compile_to_native(circuit: Circuit, gates: DeviceGates) -> Circuit:
    """``circuit`` with every supported gate outside a verbatim box rewritten in the device's
    native gates, and the whole body in one verbatim box, so that the emulator checks every
    gate as native and applies its noise to each. A gate the device neither supports nor has
    natively is kept as written, and the emulator refuses it by name. Measurements and result
    types are kept, after the box. The device's gates must have a ``family``."""
    native = gates.family
    if native is None:
        raise ValueError("no compiler for the native gates " + ", ".join(sorted(gates.native)))
    body = Circuit()
    in_box = False
    measurements: list[Instruction] = []
    for instruction in circuit.instructions:
        operator = instruction.operator
        if isinstance(operator, StartVerbatimBox):
            in_box = True
        elif isinstance(operator, EndVerbatimBox):
            in_box = False
        elif not isinstance(operator, Gate):
            measurements.append(instruction)
        elif (
            in_box
            or (operator.name.lower() in native and _plain(instruction))
            or operator.name.lower() not in gates.supported
        ):
            body.add_instruction(instruction)
        else:
            ops = _intermediate(instruction)
            if ops is None:  # left for the emulator to refuse by name
                body.add_instruction(instruction)
            else:
                for op in ops:
                    for lowered in _lower(op, native):
                        body.add_instruction(lowered)
    compiled = Circuit().add_verbatim_box(body) if body.instructions else Circuit()
    for instruction in measurements:
        compiled.add_instruction(instruction)
    for result_type in circuit.result_types:
        compiled.add_result_type(result_type)
    return compiled


def _plain(instruction: Instruction) -> bool:
    return not instruction.control and instruction.power == 1


# ------------------------------------------------------------------ supported -> intermediate


def _rx(q: int, t: Angle) -> _Op:
    return _Op("rx", (q,), t)


def _ry(q: int, t: Angle) -> _Op:
    return _Op("ry", (q,), t)


def _rz(q: int, t: Angle) -> _Op:
    return _Op("rz", (q,), t)


def _h(q: int) -> list[_Op]:
    return [_ry(q, PI / 2), _rx(q, PI)]


def _cnot(c: int, t: int) -> list[_Op]:
    return [*_h(t), _Op("cz", (c, t)), *_h(t)]


def _zz(a: int, b: int, t: Angle) -> list[_Op]:
    return [_Op("zz", (a, b), t)]


def _ccnot(a: int, b: int, c: int) -> list[_Op]:
    t, tdg = PI / 4, -PI / 4
    return [
        *_h(c),
        *_cnot(b, c),
        _rz(c, tdg),
        *_cnot(a, c),
        _rz(c, t),
        *_cnot(b, c),
        _rz(c, tdg),
        *_cnot(a, c),
        _rz(b, t),
        _rz(c, t),
        *_h(c),
        *_cnot(a, b),
        _rz(a, t),
        _rz(b, tdg),
        *_cnot(a, b),
    ]


_Rewrite = Callable[[tuple[int, ...], Sequence[Angle]], list[_Op]]

#: Each supported gate, by Braket's gate name (lower case), in the intermediate form.
_REWRITES: dict[str, _Rewrite] = {
    "i": lambda q, p: [],
    "x": lambda q, p: [_rx(q[0], PI)],
    "y": lambda q, p: [_ry(q[0], PI)],
    "z": lambda q, p: [_rz(q[0], PI)],
    "h": lambda q, p: _h(q[0]),
    "s": lambda q, p: [_rz(q[0], PI / 2)],
    "si": lambda q, p: [_rz(q[0], -PI / 2)],
    "t": lambda q, p: [_rz(q[0], PI / 4)],
    "ti": lambda q, p: [_rz(q[0], -PI / 4)],
    "v": lambda q, p: [_rx(q[0], PI / 2)],
    "vi": lambda q, p: [_rx(q[0], -PI / 2)],
    "rx": lambda q, p: [_rx(q[0], p[0])],
    "ry": lambda q, p: [_ry(q[0], p[0])],
    "rz": lambda q, p: [_rz(q[0], p[0])],
    "phaseshift": lambda q, p: [_rz(q[0], p[0])],
    "prx": lambda q, p: [_rz(q[0], -p[1]), _rx(q[0], p[0]), _rz(q[0], p[1])],
    "gpi": lambda q, p: [_rx(q[0], PI), _rz(q[0], 2 * p[0])],
    "gpi2": lambda q, p: [_rz(q[0], -p[0]), _rx(q[0], PI / 2), _rz(q[0], p[0])],
    "cnot": lambda q, p: _cnot(q[0], q[1]),
    "cz": lambda q, p: [_Op("cz", (q[0], q[1]))],
    "cy": lambda q, p: [_rz(q[1], -PI / 2), *_cnot(q[0], q[1]), _rz(q[1], PI / 2)],
    "cphaseshift": lambda q, p: [
        _rz(q[0], p[0] / 2),
        _rz(q[1], p[0] / 2),
        *_zz(q[0], q[1], -p[0] / 2),
    ],
    "zz": lambda q, p: _zz(q[0], q[1], p[0]),
    "xx": lambda q, p: [*_h(q[0]), *_h(q[1]), *_zz(q[0], q[1], p[0]), *_h(q[0]), *_h(q[1])],
    "yy": lambda q, p: [
        _rx(q[0], PI / 2),
        _rx(q[1], PI / 2),
        *_zz(q[0], q[1], p[0]),
        _rx(q[0], -PI / 2),
        _rx(q[1], -PI / 2),
    ],
    "swap": lambda q, p: [*_cnot(q[0], q[1]), *_cnot(q[1], q[0]), *_cnot(q[0], q[1])],
    "iswap": lambda q, p: [
        *_REWRITES["xx"](q, [-PI / 2]),
        *_REWRITES["yy"](q, [-PI / 2]),
    ],
    "ccnot": lambda q, p: _ccnot(q[0], q[1], q[2]),
    "cswap": lambda q, p: [*_cnot(q[2], q[1]), *_ccnot(q[0], q[1], q[2]), *_cnot(q[2], q[1])],
}

#: A gate with one control modifier that is another supported gate.
_CONTROLLED = {"x": "cnot", "z": "cz", "y": "cy", "cnot": "ccnot", "swap": "cswap"}


def _intermediate(instruction: Instruction) -> list[_Op] | None:
    """The instruction in the intermediate form, or None when it has none."""
    operator = instruction.operator
    name = operator.name.lower()
    qubits = tuple(int(q) for q in instruction.target)
    parameters = list(getattr(operator, "parameters", []))
    control = tuple(int(q) for q in instruction.control)
    if control:
        if len(control) != 1 or name not in _CONTROLLED or set(instruction.control_state) != {1}:
            return None
        if instruction.power != 1:
            return None
        name, qubits = _CONTROLLED[name], control + qubits
    elif instruction.power != 1:
        return _powered(instruction)
    rewrite = _REWRITES.get(name)
    return None if rewrite is None else rewrite(qubits, parameters)


def _powered(instruction: Instruction) -> list[_Op] | None:
    """A one-qubit gate with numbers for angles, raised to a power: its matrix in ZYZ form."""
    operator = instruction.operator
    parameters = getattr(operator, "parameters", [])
    if operator.qubit_count != 1 or any(not isinstance(p, int | float) for p in parameters):
        return None
    try:
        matrix = (
            Circuit()
            .add_instruction(Instruction(operator, 0, power=instruction.power))
            .to_unitary()
        )
    except Exception:  # Braket's refusal: the emulator names the gate
        return None
    q = int(instruction.target[0])
    alpha, beta, gamma = zyz_angles(matrix)
    return [_rz(q, gamma), _ry(q, beta), _rz(q, alpha)]


def zyz_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """``(alpha, beta, gamma)`` with ``matrix = e^{i phase} Rz(alpha) Ry(beta) Rz(gamma)``."""
    u = np.asarray(matrix, dtype=complex)
    u = u / np.sqrt(np.linalg.det(u))
    beta = 2 * math.atan2(abs(u[1, 0]), abs(u[0, 0]))
    plus = 2 * float(np.angle(u[1, 1])) if abs(u[1, 1]) > 1e-12 else 0.0
    minus = 2 * float(np.angle(u[1, 0])) if abs(u[1, 0]) > 1e-12 else 0.0
    return (plus + minus) / 2, beta, (plus - minus) / 2


# ------------------------------------------------------------------ intermediate -> native


def _lower(op: _Op, native: frozenset[str]) -> list[Instruction]:
    if native == IQM:
        return _lower_iqm(op)
    return _lower_ionq(op)


def _lower_iqm(op: _Op) -> list[Instruction]:
    q = op.qubits
    if op.name == "rx":
        return [Instruction(gates.PRx(op.angle, 0.0), q)]
    if op.name == "ry":
        return [Instruction(gates.PRx(op.angle, PI / 2), q)]
    if op.name == "rz":
        return [
            Instruction(gates.PRx(PI / 2, PI / 2), q),
            Instruction(gates.PRx(op.angle, 0.0), q),
            Instruction(gates.PRx(-PI / 2, PI / 2), q),
        ]
    if op.name == "cz":
        return [Instruction(gates.CZ(), q)]
    # zz(t) = cnot . rz(t) on the target . cnot
    a, b = q
    ops = [*_cnot(a, b), _rz(b, op.angle), *_cnot(a, b)]
    return [lowered for o in ops for lowered in _lower_iqm(o)]


def _lower_ionq(op: _Op) -> list[Instruction]:
    q = op.qubits
    if op.name == "rz":
        return [Instruction(gates.GPi(0.0), q), Instruction(gates.GPi(op.angle / 2), q)]
    if op.name == "rx":
        return [
            Instruction(gates.GPi2(3 * PI / 2), q),
            *_lower_ionq(_rz(q[0], op.angle)),
            Instruction(gates.GPi2(PI / 2), q),
        ]
    if op.name == "ry":
        return [
            Instruction(gates.GPi2(0.0), q),
            *_lower_ionq(_rz(q[0], op.angle)),
            Instruction(gates.GPi2(PI), q),
        ]
    if op.name == "zz":
        return [Instruction(gates.ZZ(op.angle), q)]
    # cz = rz(pi/2) on both . zz(-pi/2), up to a global phase
    a, b = q
    return [
        *_lower_ionq(_rz(a, PI / 2)),
        *_lower_ionq(_rz(b, PI / 2)),
        Instruction(gates.ZZ(-PI / 2), q),
    ]
