"""Circuit cutting against direct simulation of the uncut circuit.

Subexperiments run through the node agent's own executor (Braket's LocalSimulator), the uncut
circuit through the same executor; no Kafka, no database.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pytest

from nodes.executors.local import LocalExecutor
from qorchestra.cutting import CutExperiment, CuttingError, cut_program, plan_cuts
from qorchestra.cutting.finder import Event, NoCutPlan, find_cuts
from qorchestra.cutting.plan import search_budget
from qorchestra.cutting.qpd import (
    GATE_TERMS,
    WIRE_COEFFICIENTS,
    WIRE_TERMS,
    gate_coefficients,
)
from qorchestra.training.model import hardware_efficient
from tests.support.circuits import expectations, ladder


@pytest.fixture(scope="module")
def executor() -> LocalExecutor:
    return LocalExecutor("braket_sv")


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


def test_a_cnot_ladder_of_12_qubits_cut_for_4_qubit_nodes() -> None:
    plan = plan_cuts(ladder(12), 4)
    assert plan.exact
    # three pieces of 4: gate cuts measure in place and add no qubit
    assert (plan.gate_cuts, plan.wire_cuts) == (2, 0)
    assert plan.sampling_overhead == pytest.approx(81.0)
    assert [s.width for s in plan.subcircuits] == [4, 4, 4]
    assert all(s.ancillas == 0 for s in plan.subcircuits)
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


def test_a_work_budget_bounds_the_search_deterministically() -> None:
    # a 16-qubit, 3-layer hardware-efficient ansatz for 6-qubit nodes: seconds of search
    # without a budget (docs/cutting.md)
    source = hardware_efficient(16, 3).source
    budget = search_budget(0.5)
    first = plan_cuts(source, 6, max_work=budget)
    again = plan_cuts(source, 6, max_work=budget)
    assert first.truncated and not first.exact
    assert first.summary() == again.summary() and first.cuts == again.cuts
    assert all(s.width <= 6 for s in first.subcircuits)
    assert first.summary()["search_truncated"] is True

    events = [Event(i, (i % 9, (i * 4 + 1) % 9), math.log(9.0)) for i in range(40)]
    events = [e for e in events if e.qubits[0] != e.qubits[1]]
    free = find_cuts(9, events, 4)
    bounded = find_cuts(9, events, 4, max_work=free.work // 10)
    assert bounded.truncated and bounded.work <= free.work // 10
    assert bounded.log_overhead >= free.log_overhead - 1e-9
    assert max(len(s) for s in bounded.subcircuits) <= 4
    # a budget the search does not reach changes nothing
    ample = find_cuts(9, events, 4, max_work=10 * free.work)
    assert not ample.truncated and ample == replace(free, work=ample.work)


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
#: Entangling gates the cutter cannot cut: inside blocks, so that the cheapest plan cuts the
#: bridges (a cut gate adds no qubit, so cuttable gates inside would be cut instead of wires).
UNCUTTABLE = ["iswap", "swap"]
ONE_QUBIT = ["h", "s", "t", "rx", "ry", "rz"]
PARAMETRIC = ("rx", "ry", "rz", "zz", "xx", "yy", "cphaseshift")


def random_program(sizes: Sequence[int], bridges: Sequence[str], seed: int) -> str:
    """Random circuit on blocks of ``sizes`` qubits (entangled inside by gates that cannot be
    cut) joined in a chain: ``bridges[i]`` joins
    block i and i+1 with one random cuttable gate ("gate") or a swap that hands block i's last
    qubit over to block i+1 for the rest of the circuit ("wire"). Rotations before, between and
    after the entangling layers keep the expectation values away from zero; angles use the
    inputs a and b or constants."""
    rng = random.Random(seed)
    n = sum(sizes)
    lines = ["OPENQASM 3.0;", "input float a;", "input float b;", f"qubit[{n}] q;"]

    def angle() -> str:
        return rng.choice(["a", "b", "a * b", "2 * a - 0.3", f"{rng.uniform(-3, 3):.3f}"])

    def gate(name: str, *qubits: int) -> str:
        params = f"({angle()})" if name in PARAMETRIC else ""
        return f"{name}{params} " + ", ".join(f"q[{q}]" for q in qubits) + ";"

    def layer(members: Sequence[int]) -> None:
        lines.extend(gate(rng.choice(["rx", "ry"]), q) for q in members)
        for x, y in itertools.pairwise(members):
            lines.append(gate(rng.choice(UNCUTTABLE), *rng.sample([x, y], 2)))
            lines.append(gate(rng.choice(ONE_QUBIT), rng.choice([x, y])))

    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    blocks = [list(range(s, s + size)) for s, size in zip(starts, sizes, strict=True)]
    for q in range(n):
        lines += [gate("ry", q), gate("rz", q)]
    for members in blocks:
        layer(members)
    handed: dict[int, int] = {}  # block -> the qubit it hands to the next block
    for i, kind in enumerate(bridges):
        left, right = blocks[i][-1], blocks[i + 1][0]
        if kind == "gate":
            lines.append(gate(rng.choice(CUTTABLE), *rng.sample([left, right], 2)))
        else:
            lines.append(f"swap q[{left}], q[{right}];")
            handed[i] = left
    for i, members in enumerate(blocks):
        kept = [q for q in members if q != handed.get(i)]
        layer([handed[i - 1], *kept] if i - 1 in handed else kept)
    return "\n".join(lines) + "\n"


def random_observables(sizes: Sequence[int], count: int, seed: int) -> list[str]:
    """One two-qubit Pauli across each block boundary, then ``count`` random ones of weight
    1 to 3: low weight keeps the values large."""
    rng = random.Random(seed)
    n = sum(sizes)
    out = []
    for edge in itertools.accumulate(sizes[:-1]):
        letters = ["I"] * n
        letters[edge - 1], letters[edge] = rng.choice("XYZ"), rng.choice("XYZ")
        out.append("".join(letters))
    for _ in range(count):
        letters = ["I"] * n
        for q in rng.sample(range(n), rng.randint(1, 3)):
            letters[q] = rng.choice("XYZ")
        out.append("".join(letters))
    return out


def zeroed(experiment: CutExperiment, cut: int, terms: slice) -> None:
    """Make ``experiment`` reconstruct with the coefficients of ``terms`` of one cut set to
    zero (a wrong decomposition), in place."""
    right = experiment.coefficients

    def wrong(bindings: Sequence[Mapping[str, float]]) -> list[np.ndarray]:
        coefficients = [c.copy() for c in right(bindings)]
        coefficients[cut][:, terms] = 0.0
        return coefficients

    experiment.coefficients = wrong  # type: ignore[method-assign]


#: The terms beyond the first two of either decomposition: a gate cut's cos·sin terms
#: (the entangling part), a wire cut's X, Y, Z terms (all it carries beyond a mixed state).
CROSS_TERMS = slice(2, None)


def without_cross_terms(
    experiment: CutExperiment,
    results: Sequence[Sequence[Sequence[float]]],
    bindings: Sequence[Mapping[str, float]],
) -> list[np.ndarray]:
    """Per cut, the values ``[binding][observable]`` knitted with that cut's cross terms
    dropped: where a wrong decomposition would land."""
    out = []
    for cut in range(len(experiment.plan.cuts)):
        mutated = CutExperiment(experiment.plan, experiment.observables)
        zeroed(mutated, cut, CROSS_TERMS)
        out.append(np.array(mutated.reconstruct(results, bindings)))
    return out


#: (block sizes, bridges, k, seed): 6 to 10 qubits cut for 2 to 4 qubit nodes, each with gate
#: and wire cuts; the seeds are ones whose values depend on every cut by more than 0.1.
RANDOM_CASES = [
    ((2, 2, 2), ("gate", "wire"), 2, 9),
    ((3, 3, 1), ("wire", "gate"), 3, 3),
    ((3, 2, 3), ("gate", "wire"), 3, 3),
    ((4, 3, 2), ("wire", "gate"), 4, 3),
    ((3, 2, 2, 3), ("gate", "wire", "gate"), 3, 7),
    ((4, 3, 3), ("wire", "gate"), 4, 11),
]


@pytest.mark.parametrize(("sizes", "bridges", "k", "seed"), RANDOM_CASES)
def test_exact_reconstruction_equals_the_uncut_circuit(
    executor: LocalExecutor, sizes: tuple[int, ...], bridges: tuple[str, ...], k: int, seed: int
) -> None:
    n = sum(sizes)
    source = random_program(sizes, bridges, seed)
    observables = random_observables(sizes, 3, seed)
    bindings = [{"a": 0.37, "b": -1.3}, {"a": 2.2, "b": 0.45}][: 1 + seed % 2]
    experiment = cut_program(source, observables, k)
    plan = experiment.plan
    assert plan.gate_cuts >= 1 and plan.wire_cuts >= 1, "gate and wire cuts together"
    assert all(s.width <= k for s in plan.subcircuits)
    assert all(p.qubits <= k for p in experiment.programs)
    assert plan.programs_per_subcircuit == experiment.program_counts

    results = [
        expectations(executor, p.source, p.qubits, p.observables, bindings)
        for p in experiment.programs
    ]
    cut = experiment.reconstruct(results, bindings)
    direct = expectations(executor, source, n, observables, bindings)
    assert np.allclose(cut, direct, atol=1e-10, rtol=0)
    # The case cannot go trivial: large values, and every cut matters (a decomposition
    # missing any cut's cross terms would be off by far more than the tolerance).
    assert np.abs(direct).max() > 0.1
    for wrong in without_cross_terms(experiment, results, bindings):
        assert np.abs(wrong - direct).max() > 0.1


def standard_error_bound(
    experiment: CutExperiment,
    exact: Sequence[Sequence[Sequence[float]]],
    bindings: Sequence[Mapping[str, float]],
    shots: int,
) -> np.ndarray:
    """An upper bound on the standard error of each knitted value ``[binding][observable]``
    with ``shots`` per subexperiment, from the decomposition itself.

    The knitted value is affine in each single subexperiment value ``r`` (a term multiplies
    one value per subcircuit), so ``∂value/∂r`` is exactly the change when ``r`` grows by 1.
    A Pauli estimate from ``shots`` shots has standard error ``sqrt((1 - r²) / shots)``, and
    a sum's standard error is at most the sum of its parts' whatever their correlation, so
    ``Σ |∂value/∂r| · sqrt((1 - r²) / shots)`` bounds the first-order error; products of
    two errors (each term has one factor per subcircuit) add at most
    ``gamma * pieces² / shots``, gamma = sqrt(sampling overhead)."""
    base = np.array(experiment.reconstruct(exact, bindings))
    bound = np.zeros_like(base)
    for p, per_binding in enumerate(exact):
        for j, row in enumerate(per_binding):
            for o, value in enumerate(row):
                moved = [[list(r) for r in program] for program in exact]
                moved[p][j][o] += 1.0
                slope = np.array(experiment.reconstruct(moved, bindings)) - base
                bound += np.abs(slope) * math.sqrt(max(0.0, 1.0 - value**2) / shots)
    gamma = math.sqrt(experiment.plan.sampling_overhead)
    return bound + gamma * len(experiment.plan.subcircuits) ** 2 / shots


@pytest.mark.parametrize(
    ("sizes", "bridges", "k", "seed", "binding"),
    [
        ((4, 3, 2), ("wire", "gate"), 4, 3, {"a": 0.37, "b": -1.3}),
    ],
)
def test_reconstruction_with_shots_falls_within_the_sampling_bound(
    executor: LocalExecutor,
    sizes: tuple[int, ...],
    bridges: tuple[str, ...],
    k: int,
    seed: int,
    binding: dict[str, float],
) -> None:
    source = random_program(sizes, bridges, seed)
    observables = random_observables(sizes, 3, seed)
    bindings = [binding]
    experiment = cut_program(source, observables, k)
    shots = 40_000
    exact = [
        expectations(executor, p.source, p.qubits, p.observables, bindings)
        for p in experiment.programs
    ]
    sampled = [
        expectations(executor, p.source, p.qubits, p.observables, bindings, shots=shots)
        for p in experiment.programs
    ]
    direct = np.array(expectations(executor, source, sum(sizes), observables, bindings))
    # Five standard errors: a correct decomposition fails this about once in a million.
    bound = 5 * standard_error_bound(experiment, exact, bindings, shots)
    cut = np.array(experiment.reconstruct(sampled, bindings))
    assert np.all(np.abs(cut - direct) <= bound), (cut - direct, bound)
    # The bound is tight enough to catch a wrong decomposition: dropping a cut's cross
    # terms moves some value by more than twice its bound.
    wrongs = without_cross_terms(experiment, exact, bindings)
    assert any(np.any(np.abs(wrong - direct) > 2 * bound) for wrong in wrongs)


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
