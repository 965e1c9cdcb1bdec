"""The PennyLane device's translation and planning, without a stack: tapes become circuits jobs
(qorch.pennylane.plan, qorch.pennylane.qasm), the jobs run in this process on the node's own
executor (tests.support.pennylane_jobs), and the results read back equal default.qubit's and
default.mixed's."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pennylane as qml
import pytest
from pennylane.tape import QuantumScript
from pennylane.wires import Wires
from scipy.stats import unitary_group

from qorch.pennylane.plan import COUNTS, EXPECTATION, PROBABILITIES, JobPlan, plan_jobs
from qorch.pennylane.qasm import GATES, NOISE, to_program
from tests.support.pennylane_jobs import LocalJobs

pytestmark = pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")

EXACT = 1e-10
WIRES = Wires([0, 1, 2])


def run(
    tapes: Sequence[QuantumScript],
    device_wires: Wires | None = WIRES,
    pool: str = "local-sv",
    seed: int = 7,
) -> tuple[list[Any], list[JobPlan]]:
    """Plan, run in process, read back: one result per tape, and the plans."""
    plans = plan_jobs(tapes, device_wires)
    jobs = LocalJobs()
    answers = jobs.run([{"pool": pool, **plan.spec()} for plan in plans], None)
    results: list[Any] = [None] * len(tapes)
    rng = np.random.default_rng(seed)
    for plan, answer in zip(plans, answers, strict=True):
        for index, result in zip(plan.tape_indices, plan.results(answer, rng), strict=True):
            results[index] = result
    return results, plans


def reference(tapes: Sequence[QuantumScript], device: str = "default.qubit") -> Any:
    """What PennyLane's own simulator gives for the same tapes."""
    return qml.execute(tapes, qml.device(device, wires=WIRES), diff_method=None)


def prepare(rng: np.random.Generator) -> list[qml.operation.Operator]:
    """A generic entangled state on the three wires (every phase matters after it)."""
    ops: list[qml.operation.Operator] = []
    for w in WIRES:
        ops += [qml.RY(rng.uniform(0, 3), w), qml.RZ(rng.uniform(0, 3), w)]
    ops += [qml.CNOT([0, 1]), qml.CNOT([1, 2])]
    for w in WIRES:
        ops.append(qml.RX(rng.uniform(0, 3), w))
    return ops


def all_words() -> list[qml.operation.Operator]:
    """Every non-identity Pauli word on the three wires (full state tomography)."""
    words = []
    for letters in itertools.product("IXYZ", repeat=3):
        if set(letters) != {"I"}:
            words.append(qml.pauli.string_to_pauli_word("".join(letters)))
    return words


def gate(name: str, rng: np.random.Generator) -> qml.operation.Operator:
    """The gate ``name`` with random angles, on the first wires it needs."""
    if name.startswith("Adjoint("):
        return qml.adjoint(gate(name[len("Adjoint(") : -1], rng))
    cls = getattr(qml, name)
    wires = list(WIRES)[: cls.num_wires if isinstance(cls.num_wires, int) else 1]
    return cls(*rng.uniform(-3, 3, cls.num_params), wires=wires)


@pytest.mark.parametrize("name", sorted(GATES))
def test_each_gate_is_the_same_matrix_as_pennylanes(name: str) -> None:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    op = gate(name, rng)
    tape = QuantumScript([*prepare(rng), op], [qml.expval(w) for w in all_words()])
    (got,), (plan,) = run([tape])
    assert plan.result_type == EXPECTATION and len(plan.observables) == 63
    np.testing.assert_allclose(got, reference([tape])[0], atol=EXACT)


@pytest.mark.parametrize("wires", [[0], [2, 0], [1, 2, 0]])
def test_unitaries_are_pragmas_in_pennylanes_wire_order(wires: list[int]) -> None:
    rng = np.random.default_rng(len(wires))
    matrix = unitary_group.rvs(2 ** len(wires), random_state=len(wires))
    matrix[0, 0] += 1e-17j  # exponents survive the pragma's number syntax
    op = qml.QubitUnitary(matrix, wires=wires)
    tape = QuantumScript([*prepare(rng), op], [qml.expval(w) for w in all_words()])
    assert "#pragma braket unitary" in to_program(tape.operations, WIRES, 3).source
    (got,), _ = run([tape])
    np.testing.assert_allclose(got, reference([tape])[0], atol=1e-9)


NOISY = [
    *(getattr(qml, name)(0.13, wires=1) for name in sorted(NOISE)),
    qml.GeneralizedAmplitudeDamping(0.3, 0.2, wires=1),
    qml.ResetError(0.1, 0.2, wires=0),
    qml.PauliError("XY", 0.15, wires=[0, 2]),
    qml.ThermalRelaxationError(0.1, 1.0, 0.5, 0.2, wires=2),
]


@pytest.mark.parametrize("channel", NOISY, ids=lambda c: c.name)
def test_noise_channels_match_default_mixed(channel: qml.operation.Operator) -> None:
    rng = np.random.default_rng(5)
    tape = QuantumScript(
        [*prepare(rng), channel, qml.CNOT([0, 2])], [qml.expval(w) for w in all_words()]
    )
    (got,), (plan,) = run([tape], pool="local-dm")
    assert plan.noisy
    np.testing.assert_allclose(got, reference([tape], "default.mixed")[0], atol=1e-9)


def test_shifted_tapes_are_one_program_with_a_binding_each() -> None:
    rng = np.random.default_rng(1)
    base = prepare(rng)
    tapes = []
    angles = [i for i, op in enumerate(base) if op.data]
    for k in angles:
        shifted = [
            op if i != k else type(op)(op.data[0] + 0.5, wires=op.wires)
            for i, op in enumerate(base)
        ]
        tapes.append(QuantumScript(shifted, [qml.expval(qml.Z(0) @ qml.Z(2))]))
    tapes.append(tapes[0])  # the same circuit twice is run once
    got, (plan,) = run(tapes)
    assert len(plan.programs) == 1
    source, bindings = plan.programs[0]
    assert len(bindings) == len(angles) and source.count("input float") == len(angles)
    np.testing.assert_allclose(got, reference(tapes), atol=EXACT)


def test_probabilities_read_every_analytic_measurement() -> None:
    rng = np.random.default_rng(2)
    hermitian = qml.Hermitian(qml.matrix(qml.X(0) @ qml.Z(1) + 0.3 * qml.Y(0)), wires=[0, 1])
    measurements = [
        qml.expval(qml.X(0) + qml.Z(0) @ qml.Y(1) - 0.5 * qml.Z(2)),  # non-commuting words
        qml.var(qml.X(0) @ qml.Y(2)),
        qml.var(qml.Hadamard(1)),
        qml.expval(hermitian),
        qml.var(hermitian),
        qml.expval(qml.Projector([1, 0], wires=[0, 2])),
        qml.expval(qml.Projector(np.array([0.6, 0.8j]), wires=1)),
        qml.probs(wires=[2, 0]),
        qml.probs(op=qml.X(1)),
        qml.probs(),
        qml.var(qml.X(0) + qml.Y(0)),
    ]
    tape = QuantumScript(prepare(rng), measurements)
    (got,), (plan,) = run([tape])
    assert plan.result_type == PROBABILITIES
    for value, expected in zip(got, reference([tape])[0], strict=True):
        np.testing.assert_allclose(value, expected, atol=EXACT)


def test_qubit_wise_commuting_measurements_share_a_circuit() -> None:
    tape = QuantumScript(
        prepare(np.random.default_rng(3)),
        [
            qml.var(qml.X(0)),
            qml.expval(qml.X(0) @ qml.Y(1)),
            qml.probs(wires=[2]),
            qml.var(qml.Y(1)),
        ],
    )
    _, (plan,) = run([tape])
    assert plan.result_type == PROBABILITIES and plan.circuits == 1


def test_shots_give_samples_counts_and_shot_vectors() -> None:
    ops = [qml.Hadamard(0), qml.CNOT([0, 1]), qml.RY(0.7, 2)]
    measurements = [
        qml.sample(wires=[0, 1]),
        qml.counts(qml.X(2)),
        qml.expval(qml.Z(0) @ qml.Z(1)),
        qml.var(qml.Z(2)),
        qml.probs(wires=[2]),
        qml.expval(qml.X(0) + qml.Z(2)),
        qml.sample(qml.Y(1)),
    ]
    tape = QuantumScript(ops, measurements, shots=[300, (200, 2)])
    (got,), (plan,) = run([tape])
    assert plan.result_type == COUNTS and plan.shots == 700
    assert len(got) == 3
    p1 = np.sin(0.35) ** 2  # of qubit 2 after RY(0.7)
    for entry, shots in zip(got, [300, 200, 200], strict=True):
        sample, counts, zz, var, probs, _, y_sample = entry
        assert sample.shape == (shots, 2) and np.all(sample[:, 0] == sample[:, 1])
        assert set(counts) <= {-1, 1} and sum(counts.values()) == shots
        assert zz == 1.0
        # Sampled: within 5 standard errors (var(Z) = 4 p1 (1 - p1), by the delta method).
        error = np.sqrt(p1 * (1 - p1) / shots)
        assert var == pytest.approx(4 * p1 * (1 - p1), abs=5 * 4 * abs(1 - 2 * p1) * error)
        assert probs == pytest.approx([1 - p1, p1], abs=5 * error)
        assert set(np.unique(y_sample)) <= {-1, 1}


def test_counts_are_shuffled_into_samples() -> None:
    tape = QuantumScript([qml.Hadamard(0)], [qml.sample(wires=[0])], shots=400)
    (got,), _ = run([tape], device_wires=Wires([0]))
    changes = int(np.sum(got[1:, 0] != got[:-1, 0]))
    assert 100 < changes < 300  # sorted counts would change once


def test_without_device_wires_each_tape_has_its_own() -> None:
    tapes = [
        QuantumScript([qml.RY(0.4, "a")], [qml.expval(qml.Z("a"))]),
        QuantumScript([qml.RX(0.3, "b"), qml.CNOT(["b", "c"])], [qml.expval(qml.Z("c"))]),
        QuantumScript([qml.RX(0.3, "b"), qml.CNOT(["b", "c"])], [qml.probs()]),
    ]
    got, (plan,) = run(tapes, device_wires=None)
    assert plan.width == 2 and plan.result_type == PROBABILITIES
    np.testing.assert_allclose(got[0], np.cos(0.4), atol=EXACT)
    np.testing.assert_allclose(got[1], np.cos(0.3), atol=EXACT)
    np.testing.assert_allclose(got[2], [np.cos(0.15) ** 2, 0, 0, np.sin(0.15) ** 2], atol=EXACT)


def test_tapes_of_different_shots_are_different_jobs() -> None:
    tapes = [
        QuantumScript([qml.X(0)], [qml.expval(qml.Z(0))]),
        QuantumScript([qml.X(0)], [qml.expval(qml.Z(0))], shots=10),
    ]
    got, plans = run(tapes)
    assert [p.result_type for p in plans] == [EXPECTATION, COUNTS]
    assert got == [-1.0, -1.0]


def test_identities_alone_still_make_a_valid_job() -> None:
    tape = QuantumScript(
        [qml.RX(0.2, 0)], [qml.expval(qml.Identity(0)), qml.expval(2.0 * qml.I(1))]
    )
    (got,), (plan,) = run([tape])
    assert plan.observables == ("III",)
    assert got == (1.0, 2.0)
