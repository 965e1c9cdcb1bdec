"""Circuits to cut, written once for the tests and for ``bench/cutting.py``: the two-halves
circuit of issue 19 and a seeded suite of random block circuits (7-14 qubits, cut for nodes of
2-6 qubits).

A circuit is a list of :class:`Gate` so that it can be written both as OpenQASM 3 for Braket
(what qorchestra cuts) and as a Qiskit circuit (what qiskit-addon-cutting cuts).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

#: Braket's OpenQASM name -> Qiskit's, for the gates both cutters can cut (and the 1-qubit ones).
QISKIT_NAMES = {
    "h": "h",
    "rx": "rx",
    "ry": "ry",
    "rz": "rz",
    "cnot": "cx",
    "cz": "cz",
    "cy": "cy",
    "zz": "rzz",
    "xx": "rxx",
    "yy": "ryy",
    "cphaseshift": "cp",
    "crx": "crx",
    "cry": "cry",
    "crz": "crz",
}
#: Controlled rotations, written ``ctrl @ rx(θ)`` for Braket.
CONTROLLED = frozenset({"crx", "cry", "crz"})
TWO_QUBIT = ("cnot", "cz", "cy", "zz", "xx", "yy", "cphaseshift", *sorted(CONTROLLED))
PARAMETRIC = frozenset({"rx", "ry", "rz", "zz", "xx", "yy", "cphaseshift", *CONTROLLED})


@dataclass(frozen=True)
class Gate:
    """One gate: Braket's OpenQASM name, its qubits, and its angle (None when it has none)."""

    name: str
    qubits: tuple[int, ...]
    angle: float | None = None


@dataclass(frozen=True)
class CutCase:
    """A circuit to cut and the node width to cut it for."""

    name: str
    qubits: int
    gates: tuple[Gate, ...]
    max_width: int

    def qasm(self) -> str:
        """The circuit as OpenQASM 3 for Braket."""
        lines = ["OPENQASM 3.0;", f"qubit[{self.qubits}] q;"]
        for gate in self.gates:
            args = ", ".join(f"q[{i}]" for i in gate.qubits)
            angle = "" if gate.angle is None else f"({gate.angle!r})"
            name = f"ctrl @ {gate.name[1:]}" if gate.name in CONTROLLED else gate.name
            lines.append(f"{name}{angle} {args};")
        return "\n".join(lines) + "\n"


def two_halves() -> CutCase:
    """8 qubits as two halves of 4 with CNOT chains inside, and 2 CZ across at different
    layers: two gate cuts (overhead 81) fit 5-qubit nodes."""
    gates: list[Gate] = []
    for layer in range(3):
        gates += [Gate("ry", (q,), 0.3 + 0.17 * q + 0.5 * layer) for q in range(8)]
        for half in (0, 4):
            gates += [Gate("cnot", (half + i, half + i + 1)) for i in range(3)]
        if layer == 0:
            gates.append(Gate("cz", (3, 4)))
        if layer == 1:
            gates.append(Gate("cz", (0, 7)))
    gates += [Gate("rx", (q,), 0.2 + 0.1 * q) for q in range(8)]
    return CutCase("two halves of 4, 2 CZ across", 8, tuple(gates), 5)


def ten_across() -> CutCase:
    """10 qubits as halves of 5 (CNOT chains inside) with 15 CNOTs across in 3 layers."""
    gates: list[Gate] = []
    for layer in range(3):
        gates += [Gate("ry", (q,), 0.2 + 0.13 * q + 0.4 * layer) for q in range(10)]
        for half in (0, 5):
            gates += [Gate("cnot", (half + i, half + i + 1)) for i in range(4)]
        gates += [Gate("cnot", (i, 5 + (i + layer) % 5)) for i in range(5)]
    return CutCase("halves of 5, 15 CNOTs across", 10, tuple(gates), 5)


def random_block_case(seed: int) -> CutCase:
    """A random circuit of 7-14 qubits in blocks that fit nodes of 2-6 qubits: layers of
    rotations and entangling gates inside the blocks, and a few random two-qubit gates across
    them."""
    rng = random.Random(seed)
    qubits = rng.randint(7, 14)
    width = rng.randint(2, 6)
    order = list(range(qubits))
    rng.shuffle(order)
    blocks = [order[i : i + width] for i in range(0, qubits, width)]
    crossings = rng.randint(1, 3)
    gates: list[Gate] = []
    for layer in range(3):
        gates += [Gate(rng.choice(("rx", "ry")), (q,), _angle(rng)) for q in range(qubits)]
        for block in blocks:
            for a, b in itertools.pairwise(block):
                gates.append(_two_qubit(rng, (a, b)))
        if layer < 2:
            for _ in range(crossings):
                one, two = rng.sample(blocks, 2) if len(blocks) > 1 else (blocks[0], blocks[0])
                gates.append(_two_qubit(rng, (rng.choice(one), rng.choice(two))))
    return CutCase(f"random {seed}", qubits, tuple(gates), width)


def random_sparse_case(seed: int) -> CutCase:
    """A random circuit of 7-14 qubits for nodes of 2-6 qubits with no block structure:
    rotation layers and a few two-qubit gates between random pairs, so that some qubits are
    best handed over by wire cuts."""
    rng = random.Random(1000 + seed)
    qubits = rng.randint(7, 14)
    width = rng.randint(2, 6)
    gates: list[Gate] = []
    for _ in range(3):
        gates += [Gate(rng.choice(("rx", "ry")), (q,), _angle(rng)) for q in range(qubits)]
        for _ in range(rng.randint(2, 4)):
            a, b = rng.sample(range(qubits), 2)
            gates.append(_two_qubit(rng, (a, b)))
    return CutCase(f"sparse {seed}", qubits, tuple(gates), width)


def suite(count: int = 12) -> list[CutCase]:
    """The two-halves circuit, then ``count`` random block circuits (seeds 1..count) and
    ``count // 2`` sparse ones."""
    return [
        two_halves(),
        ten_across(),
        *(random_block_case(seed) for seed in range(1, count + 1)),
        *(random_sparse_case(seed) for seed in range(1, count // 2 + 1)),
    ]


def _two_qubit(rng: random.Random, qubits: tuple[int, int]) -> Gate:
    name = rng.choice(TWO_QUBIT)
    return Gate(name, qubits, _angle(rng) if name in PARAMETRIC else None)


def _angle(rng: random.Random) -> float:
    return round(rng.uniform(-math.pi, math.pi), 4)
