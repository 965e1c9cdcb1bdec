"""Many bindings of one program as one vectorised simulation, and analytic gradients by the
adjoint method: one forward and one backward pass per sample.

A training fragment with ``Encoding.gradient = GRADIENT_ADJOINT`` (pool local-sv, exact
expectations) asks, for every sample, for the readout expectations ``<O_o>`` and their
derivatives ``d<O_o>/dw_k`` by every weight input. Parameter shift needs ``1 + 2P`` circuits for
that; the adjoint method (Jones and Gacon, arXiv:2009.02823) needs one forward simulation and
one sweep back through the gates:

- forward: ``psi = U_N ... U_1 |0>``, ``lambda_o = O_o psi``, ``<O_o> = <psi|lambda_o>``;
- backward, gate by gate from the last: where gate ``k`` is ``exp(-i theta/2 P)`` with
  ``theta = +-w``, ``d<O_o>/dtheta = Im <lambda_o|P|psi>``; then ``psi`` and every ``lambda_o``
  are uncomputed by ``U_k^dagger``.

The gates are Braket's own: the program is interpreted once by :mod:`nodes.executors.compiled`
(the same parser, interpreter, qubit mapping and gate classes as ``LocalSimulator``), fixed gates
keep Braket's matrices, and gates whose angle is an input are built per binding with Braket's
constructors, except ``rx``/``ry``/``rz`` without modifiers, whose matrices are written here in
closed form for all samples at once. The state vectors of all the fragment's samples (and of
all observables) evolve together as one numpy array, so a gate costs one vectorised product for
the whole fragment. Results equal parameter shift's on ``LocalSimulator`` to 1e-10
(``tests/unit/test_adjoint.py``).

The same forward pass alone (:meth:`VectorizedProgram.expectations`) evaluates an exact training
fragment's bindings - a parameter-shift step's shifted circuits, an evaluation's samples - as
one batch instead of one Braket simulation each (``LocalExecutor``).

A weight input may only be the whole angle (or its negation) of ``rx``/``ry``/``rz`` gates with
no modifiers: a fragment that breaks the rule fails here for good. The job's validation is
stricter (each weight in exactly one such gate, as for parameter shift), so each derivative lies
in [-1, 1], like an expectation, and passes the orchestrator's value checks. A program that
measures (a cut subexperiment before its branches are deferred) or has non-unitary operations
is not vectorised: an adjoint fragment of one fails for good, an evaluation falls back to
Braket's gate-by-gate simulation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nodes.executors.base import ExecutionError
from nodes.executors.compiled import BoundParameter, CompiledProgram, ParametricGate
from proto.qorch.v1 import fragments_pb2 as pb

_PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}
#: Rotation gates ``exp(-i theta/2 P)`` and their generator ``P``.
ROTATIONS = {"rx": "X", "ry": "Y", "rz": "Z"}


@runtime_checkable
class AdjointExecutor(Protocol):
    """An executor that can answer adjoint fragments (the local state-vector simulator)."""

    def execute_adjoint(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Per binding (sample), ``1 + len(weight_inputs)`` results: expectations, then their
        derivatives by each weight input; raises :class:`ExecutionError`."""
        ...


def requested(fragment: pb.Fragment) -> bool:
    """Whether the fragment asks for adjoint gradients."""
    return fragment.HasField("encoding") and fragment.encoding.gradient == pb.GRADIENT_ADJOINT


def result_count(fragment: pb.Fragment) -> int:
    """How many results the fragment's answer carries (its bindings must be expanded)."""
    if requested(fragment):
        return len(fragment.bindings) * (1 + len(fragment.encoding.weight_inputs))
    return len(fragment.bindings)


def execute(executor: object, fragment: pb.Fragment) -> list[pb.BindingResult]:
    """Run an adjoint fragment on ``executor``; fails for good where it cannot take one."""
    if not isinstance(executor, AdjointExecutor):
        raise ExecutionError(
            f"pool {fragment.pool or '?'} cannot compute adjoint gradients (only local-sv "
            "can); use the parameter_shift gradient",
            retryable=False,
            error_type="AdjointUnsupported",
        )
    return executor.execute_adjoint(fragment)


@dataclass(frozen=True)
class _Gate:
    """One operation of the circuit: the qubits it acts on (controls first), its matrix when
    it is the same for every binding, else how to build it; and which weight it carries."""

    qubits: tuple[int, ...]
    matrix: np.ndarray | None  # (d, d), or None: built per run
    parametric: ParametricGate | None = None
    rotation: str = ""  # generator of a closed-form rotation ("X", "Y", "Z"), else ""
    weight: int = -1  # index of the weight input whose derivative it carries, or -1
    sign: float = 1.0  # theta = sign * value of the input


class VectorizedProgram:
    """A compiled program run for many bindings at once: expectations, and their derivatives
    by ``weight_inputs`` (none for a program only evaluated)."""

    def __init__(
        self,
        compiled: CompiledProgram,
        weight_inputs: Sequence[str],
        observables: Sequence[str],
    ) -> None:
        if compiled.shots or compiled.measures:
            raise ExecutionError(
                "adjoint gradients and vectorised runs need exact expectations (shots 0) of a "
                "program without measurements",
                retryable=False,
                error_type="AdjointUnsupported",
            )
        self._compiled = compiled
        self.qubits = compiled.qubit_count
        self.weight_inputs = tuple(weight_inputs)
        self._paulis = [_mapped_pauli(o, compiled.qubit_map) for o in observables]
        weights = {name: k for k, name in enumerate(self.weight_inputs)}
        parametric = {g.index: g for g in compiled.parametric}
        self._gates: list[_Gate] = []
        for index, operation in enumerate(compiled.instructions):
            gate = parametric.get(index)
            if gate is None:
                self._gates.extend(_fixed_gate(operation))
            else:
                self._gates.append(_open_gate(gate, weights))
        self._rotation_inputs = sorted(
            {
                p.name
                for g in self._gates
                if g.rotation and g.parametric is not None
                for p in g.parametric.params
                if isinstance(p, BoundParameter)
            }
        )

    def expectations(self, bindings: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Expectations ``(B, O)`` for ``B`` bindings."""
        _, _, _, expectations = self._forward(bindings)
        return expectations

    def adjoint(self, bindings: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Expectations ``(B, O)`` and derivatives ``(B, P, O)`` for ``B`` bindings."""
        n = self.qubits
        matrices, psi, lam, expectations = self._forward(bindings)
        derivatives = np.zeros((len(bindings), len(self.weight_inputs), len(self._paulis)))
        both = np.concatenate([psi, lam], axis=1)  # uncomputed together, gate by gate
        for gate, matrix in zip(reversed(self._gates), reversed(matrices), strict=True):
            if gate.weight >= 0:
                turned = _apply(both[:, :1], _PAULI[gate.rotation], gate.qubits, n)
                overlap = np.einsum("boj,bj->bo", both[:, 1:].conj(), turned[:, 0])
                derivatives[:, gate.weight, :] += gate.sign * np.imag(overlap)
            both = _apply(both, _dagger(matrix), gate.qubits, n)
        return expectations, derivatives

    def _forward(
        self, bindings: Sequence[Mapping[str, float]]
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Each gate's matrix, the final states ``(B, 1, 2**n)``, each observable applied to
        them ``(B, O, 2**n)``, and the expectations ``(B, O)``."""
        n = self.qubits
        values = [self._compiled.cast_inputs(b) for b in bindings]
        columns = {
            name: np.array([float(v[name]) for v in values]) for name in self._rotation_inputs
        }
        matrices = [self._matrix(g, values, columns) for g in self._gates]
        psi = np.zeros((len(bindings), 1, 2**n), dtype=complex)
        psi[:, 0, 0] = 1.0
        for gate, matrix in zip(self._gates, matrices, strict=True):
            psi = _apply(psi, matrix, gate.qubits, n)
        lam = np.concatenate([psi[:, :0], *(_apply_pauli(psi, p, n) for p in self._paulis)], axis=1)
        expectations = np.real(np.einsum("bkj,bkj->bk", psi.conj(), lam))
        expectations[:, [not p for p in self._paulis]] = 1.0  # the identity, as Braket says
        return matrices, psi, lam, expectations

    def _matrix(
        self,
        gate: _Gate,
        values: Sequence[Mapping[str, Any]],
        columns: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """The gate's matrix: fixed ``(d, d)``, or ``(B, d, d)`` built from the bindings
        (``columns``: each rotation input's values over the bindings)."""
        if gate.matrix is not None:
            return gate.matrix
        assert gate.parametric is not None
        if gate.rotation:
            (param,) = gate.parametric.params
            assert isinstance(param, BoundParameter)
            return _rotations(gate.rotation, gate.sign * columns[param.name])
        return np.stack(
            [_with_controls(self._compiled.gate_operation(gate.parametric, v)) for v in values]
        )


def _fixed_gate(operation: Any) -> list[_Gate]:
    """A gate built once: Braket's matrix (a global phase without controls is dropped)."""
    matrix = getattr(operation, "matrix", None)
    if matrix is None or not hasattr(operation, "control_state"):
        raise ExecutionError(
            f"adjoint gradients need a unitary circuit; {type(operation).__name__} is not a gate",
            retryable=False,
            error_type="AdjointUnsupported",
        )
    if not operation.targets:
        return []
    return [_Gate(tuple(operation.targets), _with_controls(operation))]


def _open_gate(gate: ParametricGate, weights: Mapping[str, int]) -> _Gate:
    """A gate whose parameters are inputs, and the weight it carries (if any)."""
    names = [p.name for p in gate.params if isinstance(p, BoundParameter)]
    carried = [weights[name] for name in names if name in weights]
    plain = (
        gate.name in ROTATIONS
        and len(gate.params) == 1
        and isinstance(gate.params[0], BoundParameter)
        and not gate.ctrl_modifiers
        and gate.power == 1
    )
    if carried and not plain:
        raise ExecutionError(
            f"weight {names[0]!r} is a parameter of {gate.name!r} with modifiers or other "
            "parameters; adjoint differentiates weights that are the whole angle of rx, ry "
            "or rz gates: use the spsa gradient",
            retryable=False,
            error_type="AdjointUnsupported",
        )
    if not plain:
        return _Gate(gate.targets, None, gate)
    param = gate.params[0]
    assert isinstance(param, BoundParameter)
    return _Gate(
        gate.targets,
        None,
        gate,
        rotation=ROTATIONS[gate.name],
        weight=carried[0] if carried else -1,
        sign=-1.0 if param.negate else 1.0,
    )


def _rotations(axis: str, angles: np.ndarray) -> np.ndarray:
    """``exp(-i theta/2 P)`` for every angle, ``(B, 2, 2)``, as Braket's RotX/RotY/RotZ."""
    cos, sin = np.cos(angles / 2), np.sin(angles / 2)
    out = np.zeros((len(angles), 2, 2), dtype=complex)
    if axis == "X":
        out[:, 0, 0] = out[:, 1, 1] = cos
        out[:, 0, 1] = out[:, 1, 0] = -1j * sin
    elif axis == "Y":
        out[:, 0, 0] = out[:, 1, 1] = cos
        out[:, 0, 1], out[:, 1, 0] = -sin, sin
    else:
        out[:, 0, 0] = np.exp(-0.5j * angles)
        out[:, 1, 1] = np.exp(0.5j * angles)
    return out


def _with_controls(operation: Any) -> np.ndarray:
    """Braket's matrix of ``operation`` over its controls and targets (controls first)."""
    matrix = np.asarray(operation.matrix, dtype=complex)
    state = tuple(int(c) for c in operation.control_state)
    if not state:
        return matrix
    width = matrix.shape[0]
    full = np.eye(width << len(state), dtype=complex)
    start = int("".join(map(str, state)), 2) * width
    full[start : start + width, start : start + width] = matrix
    return full


def _dagger(matrix: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(matrix, -1, -2))


def _apply(states: np.ndarray, matrix: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """``matrix`` on ``qubits`` of states ``(B, K, 2**n)``; the matrix is ``(d, d)`` for all,
    or ``(B, d, d)`` one per binding. Qubit 0 is the most significant bit, as in Braket."""
    batch, kinds = states.shape[:2]
    k = len(qubits)
    tensor = states.reshape((batch, kinds) + (2,) * n)
    axes = [2 + q for q in qubits]
    last = list(range(2 + n - k, 2 + n))
    moved = np.moveaxis(tensor, axes, last)
    shape = moved.shape
    flat = moved.reshape(batch, -1, 2**k)
    flat = flat @ matrix.T if matrix.ndim == 2 else np.matmul(flat, np.swapaxes(matrix, 1, 2))
    return np.moveaxis(flat.reshape(shape), last, axes).reshape(batch, kinds, 2**n)


def _apply_pauli(states: np.ndarray, pauli: tuple[tuple[int, str], ...], n: int) -> np.ndarray:
    """A Pauli string (as (qubit, letter) pairs) applied to states ``(B, 1, 2**n)``."""
    out = states
    for qubit, letter in pauli:
        out = _apply(out, _PAULI[letter], (qubit,), n)
    return out


def _mapped_pauli(observable: str, qubit_map: Mapping[int, int]) -> tuple[tuple[int, str], ...]:
    """The non-identity letters of ``observable`` on the simulation's qubits."""
    letters = []
    for qubit, letter in enumerate(observable):
        if letter == "I":
            continue
        if qubit not in qubit_map:
            raise ExecutionError(
                f"observable {observable!r} acts on qubit {qubit}, which the program does not use",
                retryable=False,
                error_type="ProgramError",
            )
        letters.append((qubit_map[qubit], letter))
    return tuple(letters)


def binding_results(expectations: np.ndarray, derivatives: np.ndarray) -> list[pb.BindingResult]:
    """Per binding: the expectations, then the derivatives by each weight (sample-major)."""
    out = []
    for row, grads in zip(expectations, derivatives, strict=True):
        out.append(pb.BindingResult(expectations=pb.Expectations(values=row.tolist())))
        out.extend(pb.BindingResult(expectations=pb.Expectations(values=g.tolist())) for g in grads)
    return out
