"""Circuit cutting against direct simulation of the uncut circuit.

Subexperiments run through the node agent's own executor (Braket's LocalSimulator), the uncut
circuit through the same executor; no Kafka, no database.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from nodes.executors.local import LocalExecutor
from orchestrator.cutting import CutExperiment, CuttingError, cut_program, plan_cuts
from orchestrator.cutting.finder import Event, NoCutPlan, find_cuts
from orchestrator.cutting.qpd import (
    GATE_TERMS,
    WIRE_COEFFICIENTS,
    WIRE_TERMS,
    gate_coefficients,
)
from proto.qorch.v1 import fragments_pb2 as pb


@pytest.fixture(scope="module")
def executor() -> LocalExecutor:
    return LocalExecutor("braket_sv")


def expectations(
    executor: LocalExecutor,
    source: str,
    qubits: int,
    observables: Sequence[str],
    bindings: Sequence[Mapping[str, float]],
    shots: int = 0,
) -> list[list[float]]:
    """``[binding][observable]`` from one expectation fragment run by the node's executor."""
    fragment = pb.Fragment(
        fragment_id="f",
        job_id="j",
        attempt=1,
        pool="local-sv",
        program=source,
        bindings=[pb.Binding(values=b) for b in bindings] or [pb.Binding()],
        shots=shots,
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=list(observables),
        qubits=qubits,
    )
    return [list(r.expectations.values) for r in executor.execute(fragment)]


def run_cut(
    executor: LocalExecutor,
    experiment: CutExperiment,
    bindings: Sequence[Mapping[str, float]],
    shots: int = 0,
) -> list[list[float]]:
    """Run every subexperiment and knit the values of the whole circuit."""
    results = [
        expectations(executor, p.source, p.qubits, p.observables, bindings, shots)
        for p in experiment.programs
    ]
    return experiment.reconstruct(results, bindings)


# ---- the decompositions themselves, as channels on density matrices (numpy only) ----

I2 = np.eye(2)
Z = np.diag([1.0, -1.0])
P0, P1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
PAULIS = {
    "I": I2,
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": Z,
}
STATES = {
    "0": np.array([1, 0]),
    "1": np.array([0, 1]),
    "+": np.array([1, 1]) / math.sqrt(2),
    "-": np.array([1, -1]) / math.sqrt(2),
    "+i": np.array([1, 1j]) / math.sqrt(2),
    "-i": np.array([1, -1j]) / math.sqrt(2),
}


def random_density(dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(dim, dim)) + 1j * rng.normal(size=(dim, dim))
    rho = m @ m.conj().T
    return rho / np.trace(rho)


def side_map(action: str, rho: np.ndarray, side: int) -> np.ndarray:
    """One side's action of a gate-cut term on a two-qubit operator."""

    def on(u: np.ndarray) -> np.ndarray:
        return np.kron(u, I2) if side == 0 else np.kron(I2, u)

    def rot(sign: float) -> np.ndarray:
        return on(np.cos(math.pi / 4) * I2 + 1j * sign * np.sin(math.pi / 4) * Z)

    if action == "none":
        return rho
    if action == "z":
        return on(Z) @ rho @ on(Z)
    if action in ("r+", "r-"):
        u = rot(1.0 if action == "r+" else -1.0)
        return u @ rho @ u.conj().T
    return on(P0) @ rho @ on(P0) - on(P1) @ rho @ on(P1)  # measure Z, times the outcome


@pytest.mark.parametrize("theta", [0.0, 0.3, math.pi / 4, -1.2, 2.5])
def test_gate_decomposition_equals_the_zz_rotation(theta: float) -> None:
    rho = random_density(4, seed=int(theta * 100) % 97)
    zz = np.kron(Z, Z)
    u = math.cos(theta) * np.eye(4) + 1j * math.sin(theta) * zz
    coefficients = gate_coefficients(np.array([theta]))[0]
    total = np.zeros((4, 4), dtype=complex)
    for c, (a, b) in zip(coefficients, GATE_TERMS, strict=True):
        total += c * side_map(b, side_map(a, rho, 0), 1)
    assert np.allclose(total, u @ rho @ u.conj().T, atol=1e-12)
    assert np.abs(coefficients).sum() == pytest.approx(1 + 2 * abs(math.sin(2 * theta)))


def test_wire_decomposition_is_the_identity_channel() -> None:
    rho = random_density(2, seed=3)
    total = np.zeros((2, 2), dtype=complex)
    for c, (pauli, state, _) in zip(WIRE_COEFFICIENTS, WIRE_TERMS, strict=True):
        ket = STATES[state]
        total += c * np.trace(PAULIS[pauli] @ rho) * np.outer(ket, ket.conj())
    assert np.allclose(total, rho, atol=1e-12)
    assert np.abs(WIRE_COEFFICIENTS).sum() == 4.0


# ---- where to cut ----


def ladder(n: int) -> str:
    lines = ["OPENQASM 3.0;", "input float t;", f"qubit[{n}] q;"]
    lines += [f"ry(t * {i + 1}) q[{i}];" for i in range(n)]
    lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(n - 1)]
    lines += [f"rx(t) q[{i}];" for i in range(n)]
    return "\n".join(lines) + "\n"


def test_a_cnot_ladder_of_12_qubits_cut_for_6_qubit_nodes() -> None:
    plan = plan_cuts(ladder(12), 6)
    assert plan.exact
    assert (plan.gate_cuts, plan.wire_cuts) == (2, 0)
    assert plan.sampling_overhead == pytest.approx(81.0)
    assert all(s.width <= 6 for s in plan.subcircuits)
    covered = sorted(q for s in plan.subcircuits for q in s.qubits)
    assert covered == list(range(12))


def test_wire_cuts_where_no_gate_can_be_cut() -> None:
    source = "OPENQASM 3.0;\nqubit[4] q;\nh q[0];\nswap q[0], q[1];\nswap q[1], q[2];\n"
    source += "swap q[2], q[3];\n"
    plan = plan_cuts(source, 2)
    assert plan.gate_cuts == 0
    assert plan.wire_cuts >= 1
    assert all(s.width <= 2 for s in plan.subcircuits)


def test_a_circuit_that_fits_is_not_cut() -> None:
    plan = plan_cuts(ladder(5), 5)
    assert plan.cuts == ()
    assert plan.sampling_overhead == 1.0


def test_beam_search_keeps_plans_valid_and_says_it_is_heuristic() -> None:
    events = [Event(i, (i % 7, (i * 3 + 1) % 7), math.log(9.0)) for i in range(30)]
    events = [e for e in events if e.qubits[0] != e.qubits[1]]
    exact = find_cuts(7, events, 4, max_states=100_000)
    beam = find_cuts(7, events, 4, max_states=5)
    assert exact.exact and not beam.exact
    assert beam.log_overhead >= exact.log_overhead - 1e-9
    for solution in (exact, beam):
        widths = [len(s) for s in solution.subcircuits]
        assert max(widths) <= 4


def test_no_plan_when_an_operation_is_wider_than_the_limit() -> None:
    source = "OPENQASM 3.0;\nqubit[3] q;\nccnot q[0], q[1], q[2];\n"
    with pytest.raises(CuttingError, match="3 qubits"):
        plan_cuts(source, 2)
    with pytest.raises(NoCutPlan):
        find_cuts(2, [Event(0, (0, 1), None)], 1)


def test_measuring_programs_are_refused() -> None:
    source = "OPENQASM 3.0;\nbit[1] c;\nqubit[2] q;\nh q[0];\nc[0] = measure q[0];\n"
    with pytest.raises(CuttingError, match="measure"):
        plan_cuts(source, 1)


# ---- reconstruction equals direct simulation ----

CUTTABLE = ["cnot", "cz", "cy", "zz", "xx", "yy", "cphaseshift"]
ONE_QUBIT = ["h", "s", "t", "x", "rx", "ry", "rz"]


def random_program(n: int, block: int, bridges: int, seed: int) -> str:
    """Random gates inside blocks of ``block`` qubits, ``bridges`` two-qubit gates between
    neighbouring blocks (cuttable or swaps), parameters from inputs a and b."""
    rng = random.Random(seed)
    lines = ["OPENQASM 3.0;", "input float a;", "input float b;", f"qubit[{n}] q;"]

    def angle() -> str:
        return rng.choice(["a", "b", "a * b", "2 * a - 0.3", f"{rng.uniform(-3, 3):.3f}"])

    def gate(name: str, *qubits: int) -> str:
        params = (
            f"({angle()})" if name in ("rx", "ry", "rz", "zz", "xx", "yy", "cphaseshift") else ""
        )
        return f"{name}{params} " + ", ".join(f"q[{q}]" for q in qubits) + ";"

    starts = list(range(0, n, block))
    lines += [gate(rng.choice(ONE_QUBIT), q) for q in range(n)]
    for layer in range(2):
        for start in starts:
            members = list(range(start, min(start + block, n)))
            for _ in range(len(members)):
                if len(members) > 1:
                    a, b = rng.sample(members, 2)
                    lines.append(gate(rng.choice(CUTTABLE), a, b))
                lines.append(gate(rng.choice(ONE_QUBIT), rng.choice(members)))
        for _ in range(bridges if layer == 0 else 0):
            left = rng.randrange(len(starts) - 1)
            a = rng.randrange(starts[left], starts[left + 1])
            b = rng.randrange(starts[left + 1], min(starts[left + 1] + block, n))
            lines.append(gate(rng.choice([*CUTTABLE, "swap"]), *rng.sample([a, b], 2)))
    return "\n".join(lines) + "\n"


def random_observables(n: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("IXYZ") for _ in range(n)) for _ in range(count)] + ["Z" * n]


@pytest.mark.parametrize(
    ("n", "k", "bridges", "seed"),
    [(6, 3, 1, 1), (7, 4, 1, 4), (9, 4, 1, 29), (9, 5, 1, 6), (10, 4, 1, 2), (10, 5, 1, 5)],
)
def test_exact_reconstruction_equals_the_uncut_circuit(
    executor: LocalExecutor, n: int, k: int, bridges: int, seed: int
) -> None:
    source = random_program(n, k - 1, bridges, seed)
    observables = random_observables(n, 2, seed)
    bindings = [{"a": 0.37, "b": -1.3}, {"a": 2.2, "b": 0.45}][: 1 + seed % 2]
    experiment = cut_program(source, observables, k)
    plan = experiment.plan
    assert plan.cuts, "the random circuit should need cutting"
    assert all(s.width <= k for s in plan.subcircuits)
    assert all(p.qubits <= k for p in experiment.programs)

    cut = run_cut(executor, experiment, bindings)
    direct = expectations(executor, source, n, observables, bindings)
    assert np.allclose(cut, direct, atol=1e-8, rtol=0)


def test_reconstruction_with_shots_falls_within_the_sampling_bound(
    executor: LocalExecutor,
) -> None:
    source = random_program(6, 3, 1, seed=11)
    observables = ["ZZZZZZ", "ZIIIIZ", "IIZZII", "XIIIIX"]
    bindings = [{"a": 0.8, "b": -0.6}]
    experiment = cut_program(source, observables, 4)
    shots = 4000
    cut = np.array(run_cut(executor, experiment, bindings, shots=shots))
    direct = np.array(expectations(executor, source, 6, observables, bindings))
    gamma = math.sqrt(experiment.plan.sampling_overhead)
    pieces = len(experiment.plan.subcircuits)
    # Each subexperiment value has a standard error of at most 1/sqrt(shots); the knitted
    # value's is at most gamma * sqrt(pieces / shots). Five of those is the bound.
    bound = 5 * gamma * math.sqrt(pieces / shots)
    assert np.all(np.abs(cut - direct) <= bound), (cut - direct, bound)


def test_inputs_named_like_braket_reserved_names(executor: LocalExecutor) -> None:
    source = (
        "OPENQASM 3.0;\ninput float b;\nqubit[4] r;\nry(b) r[0];\nry(2 * b) r[3];\n"
        "h r[1];\ncnot r[0], r[1];\nzz(b) r[1], r[2];\ncnot r[2], r[3];\n"
    )
    observables = ["ZZZZ", "XIIY"]
    bindings = [{"b": 0.9}]
    experiment = cut_program(source, observables, 3)
    assert experiment.plan.gate_cuts >= 1
    cut = run_cut(executor, experiment, bindings)
    direct = expectations(executor, source, 4, observables, bindings)
    assert np.allclose(cut, direct, atol=1e-8)
