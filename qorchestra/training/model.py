"""Parameterised circuits of training jobs, as OpenQASM 3 sources with ``input`` parameters.

Pure. A :class:`CircuitModel` is what nodes run: a source whose inputs are the encoded features
(named by the feature map, see ``Encoding`` in ``fragments.proto``) and the *circuit parameters*
``theta``. Each circuit parameter is the whole angle of exactly one rotation gate (``rx``,
``ry``, ``rz``), so the parameter-shift rule (shift by +-pi/2) gives exact derivatives. The
optimizer's *weights* ``w`` map to them linearly, ``theta = jacobian @ w``: the identity for the
hardware-efficient ansatz, and for QAOA one angle per gate from each layer's gamma and beta.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

HEADER = "OPENQASM 3.0;\n"


@dataclass(frozen=True)
class CircuitModel:
    """A parameterised circuit and how its inputs are fed."""

    source: str
    qubits: int
    feature_map: str  # angle, zz, direct, or "" when the circuit has no features
    weight_inputs: tuple[str, ...]
    jacobian: np.ndarray = field(compare=False)  # d theta / d w, shape (len(theta), len(w))
    feature_inputs: tuple[str, ...] = ()

    @property
    def weights(self) -> int:
        """Number of trainable weights ``w``."""
        return int(self.jacobian.shape[1])

    def circuit_parameters(self, weights: np.ndarray) -> np.ndarray:
        """``theta = jacobian @ w``."""
        return np.asarray(self.jacobian @ weights, dtype=float)


def _ring(qubits: int) -> list[tuple[int, int]]:
    if qubits < 2:
        return []
    if qubits == 2:
        return [(0, 1)]
    return [(q, (q + 1) % qubits) for q in range(qubits)]


def _encoding_lines(qubits: int, feature_map: str) -> list[str]:
    if feature_map == "angle":
        return [f"ry(x{q}) q[{q}];" for q in range(qubits)]
    if feature_map == "zz":
        lines = [f"h q[{q}];" for q in range(qubits)]
        lines += [f"rz(x{q}) q[{q}];" for q in range(qubits)]
        for a, b in _ring(qubits):
            lines += [f"cnot q[{a}], q[{b}];", f"rz(p{a}) q[{b}];", f"cnot q[{a}], q[{b}];"]
        return lines
    raise ValueError(f"unknown feature map {feature_map!r}")


def _layer_lines(qubits: int, first: int) -> tuple[list[str], int]:
    """One hardware-efficient layer: ry, rz on every qubit, then a ring of CNOTs."""
    lines: list[str] = []
    k = first
    for q in range(qubits):
        lines += [f"ry(w{k}) q[{q}];", f"rz(w{k + 1}) q[{q}];"]
        k += 2
    lines += [f"cnot q[{a}], q[{b}];" for a, b in _ring(qubits)]
    return lines, k


def _declarations(inputs: list[str], qubits: int) -> str:
    return "".join(f"input float {name};\n" for name in inputs) + f"qubit[{qubits}] q;\n"


def classifier(qubits: int, feature_map: str, layers: int, reupload: bool) -> CircuitModel:
    """Feature map, then ``layers`` hardware-efficient layers (the map again before each layer
    when ``reupload``)."""
    encode = _encoding_lines(qubits, feature_map)
    body: list[str] = list(encode)
    k = 0
    for layer in range(layers):
        if reupload and layer > 0:
            body += encode
        lines, k = _layer_lines(qubits, k)
        body += lines
    features = [f"x{q}" for q in range(qubits)]
    if feature_map == "zz" and qubits > 1:
        features += [f"p{a}" for a, _ in _ring(qubits)]
    weights = [f"w{i}" for i in range(k)]
    source = HEADER + _declarations(features + weights, qubits) + "\n".join(body) + "\n"
    return CircuitModel(source, qubits, feature_map, tuple(weights), np.eye(k))


def hardware_efficient(qubits: int, layers: int) -> CircuitModel:
    """``layers`` hardware-efficient layers and a final rotation layer, no features."""
    body: list[str] = []
    k = 0
    for _ in range(layers):
        lines, k = _layer_lines(qubits, k)
        body += lines
    for q in range(qubits):
        body += [f"ry(w{k}) q[{q}];", f"rz(w{k + 1}) q[{q}];"]
        k += 2
    weights = [f"w{i}" for i in range(k)]
    source = HEADER + _declarations(weights, qubits) + "\n".join(body) + "\n"
    return CircuitModel(source, qubits, "", tuple(weights), np.eye(k))


def qaoa(qubits: int, layers: int, terms: list[tuple[float, str]]) -> CircuitModel:
    """QAOA for a diagonal cost: per layer exp(-i gamma C) then exp(-i beta sum X).

    Weights are ``[gamma_0, beta_0, gamma_1, beta_1, ...]``. A cost term ``c * Z..Z`` becomes a
    CNOT ladder around ``rz(theta)`` with ``theta = 2 c gamma``; each mixer ``rx(2 beta)``.
    """
    body = [f"h q[{q}];" for q in range(qubits)]
    names: list[str] = []
    rows: list[tuple[int, float]] = []  # (weight index, coefficient) per circuit parameter
    for layer in range(layers):
        for coeff, pauli in terms:
            support = [q for q, p in enumerate(pauli) if p == "Z"]
            if not support:
                continue
            name = f"t{len(names)}"
            names.append(name)
            rows.append((2 * layer, 2 * coeff))
            ladder = [f"cnot q[{a}], q[{b}];" for a, b in itertools.pairwise(support)]
            body += ladder + [f"rz({name}) q[{support[-1]}];"] + ladder[::-1]
        for q in range(qubits):
            name = f"t{len(names)}"
            names.append(name)
            rows.append((2 * layer + 1, 2.0))
            body.append(f"rx({name}) q[{q}];")
    jacobian = np.zeros((len(names), 2 * layers))
    for i, (w, c) in enumerate(rows):
        jacobian[i, w] = c
    source = HEADER + _declarations(names, qubits) + "\n".join(body) + "\n"
    return CircuitModel(source, qubits, "", tuple(names), jacobian)


def template(
    source: str, qubits: int, feature_inputs: list[str], weight_inputs: list[str]
) -> CircuitModel:
    """A user's OpenQASM 3 template: features go to ``feature_inputs`` in order, weights to
    ``weight_inputs`` one to one. Parameter shift assumes each weight is the whole angle of one
    rotation gate; otherwise use the ``spsa`` gradient."""
    feature_map = "direct" if feature_inputs else ""
    n = len(weight_inputs)
    return CircuitModel(
        source, qubits, feature_map, tuple(weight_inputs), np.eye(n), tuple(feature_inputs)
    )


def readout_observables(qubits: int, classes: int) -> list[str]:
    """Z on qubit 0 for two classes; Z on qubit c for class c otherwise."""
    count = 1 if classes <= 2 else classes
    return ["I" * c + "Z" + "I" * (qubits - c - 1) for c in range(count)]
