"""The sample job ``qorch demo`` runs: a 6-qubit hardware-efficient variational circuit."""

from __future__ import annotations

import math
import random
from typing import Any

QUBITS = 6


def variational_program(qubits: int = QUBITS) -> str:
    """Two RY layers around a ring of CNOTs, with ``2 * qubits`` float inputs t0..tN."""
    lines = ["OPENQASM 3.0;"]
    lines += [f"input float t{i};" for i in range(2 * qubits)]
    lines.append(f"qubit[{qubits}] q;")
    lines += [f"ry(t{i}) q[{i}];" for i in range(qubits)]
    lines += [f"cnot q[{i}], q[{(i + 1) % qubits}];" for i in range(qubits)]
    lines += [f"ry(t{qubits + i}) q[{i}];" for i in range(qubits)]
    return "\n".join(lines) + "\n"


def ring_observables(qubits: int = QUBITS) -> list[str]:
    """Z_i Z_{i+1} around the ring: the terms of a 1-D Ising energy."""
    out = []
    for i in range(qubits):
        letters = ["I"] * qubits
        letters[i] = letters[(i + 1) % qubits] = "Z"
        out.append("".join(letters))
    return out


def demo_job(settings_count: int = 64, seed: int = 7, shots: int = 0) -> dict[str, Any]:
    """A circuits job: ``settings_count`` random parameter settings of the variational circuit."""
    rng = random.Random(seed)
    bindings = [
        {f"t{i}": rng.uniform(-math.pi, math.pi) for i in range(2 * QUBITS)}
        for _ in range(settings_count)
    ]
    return {
        "name": f"demo: {settings_count} settings of a {QUBITS}-qubit variational circuit",
        "kind": "circuits",
        "pool": "local-sv",
        "shots": shots,
        "result": {"type": "expectation", "observables": ring_observables()},
        "programs": [{"source": variational_program(), "bindings": bindings}],
    }


#: Qubits of the ``qorch demo --cut`` circuit, and of the nodes it runs on.
CUT_QUBITS, CUT_NODE_QUBITS = 12, 6


def ladder_program(qubits: int = CUT_QUBITS) -> str:
    """An RY layer, a ladder of CNOTs down the register, an RX layer; one float input ``t``."""
    lines = ["OPENQASM 3.0;", "input float t;", f"qubit[{qubits}] q;"]
    lines += [f"ry(t * {i + 1}) q[{i}];" for i in range(qubits)]
    lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(qubits - 1)]
    lines += [f"rx(t) q[{i}];" for i in range(qubits)]
    return "\n".join(lines) + "\n"


def cut_demo_job(settings: tuple[float, ...] = (0.3, -1.1, 2.0)) -> dict[str, Any]:
    """A 12-qubit expectation job, for nodes of 6 qubits: it runs cut (docs/cutting.md)."""
    n = CUT_QUBITS
    observables = [
        "Z" * n,
        "ZZ" + "I" * (n - 2),
        "I" * 5 + "XX" + "I" * (n - 7),
        "I" * (n - 1) + "Y",
    ]
    return {
        "name": f"demo: a {n}-qubit circuit on {CUT_NODE_QUBITS}-qubit nodes",
        "kind": "circuits",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": observables},
        "programs": [{"source": ladder_program(n), "bindings": [{"t": t} for t in settings]}],
    }
