"""The pure parts of the Qiskit primitives and the Braket device, without a platform: which
qubit each classical bit reads, bit order in registers, PUBs as bindings, Pauli strings, and
Braket's targets and marginals. tests/integration/test_qiskit_braket.py runs them for real."""

from __future__ import annotations

import numpy as np
import pytest
from braket.circuits import Circuit, Observable
from braket.circuits.result_types import Probability
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qorch.braket import _marginal, _pauli, _plan, _projected
from qorch.qiskit import (
    _estimator_result,
    _expanded,
    _final_measurements,
    _platform_pauli,
    _prepare,
    _sampler_result,
    _terms,
    shots_for,
)


def asymmetric() -> QuantumCircuit:
    q = QuantumRegister(3)
    alpha, beta = ClassicalRegister(3, "alpha"), ClassicalRegister(2, "beta")
    circuit = QuantumCircuit(q, alpha, beta)
    circuit.ry(Parameter("t"), 2)
    circuit.barrier()
    circuit.measure(0, alpha[2])
    circuit.measure(2, alpha[0])
    circuit.measure(1, beta[1])
    return circuit


def test_final_measurements_map_each_register_bit_to_its_qubit() -> None:
    assert _final_measurements(asymmetric()) == {("alpha", 2): 0, ("alpha", 0): 2, ("beta", 1): 1}
    prepared = _prepare(
        asymmetric(), SamplerPub.coerce((asymmetric(), [[0.5], [1.5]])).parameter_values
    )
    assert prepared.measured == {"alpha": [2, None, 0], "beta": [None, 1]}
    assert [op.operation.name for op in prepared.circuit.data] == ["ry"]  # no barrier, measures
    assert [list(b.values()) for b in prepared.bindings] == [[0.5], [1.5]]


def test_mid_circuit_measurements_are_refused() -> None:
    circuit = QuantumCircuit(1, 1)
    circuit.measure(0, 0)
    circuit.h(0)
    with pytest.raises(ValueError, match="mid-circuit"):
        _prepare(circuit, SamplerPub.coerce(circuit).parameter_values)


def test_registers_read_qubits_with_clbit_0_least_significant() -> None:
    """Counts keys put qubit 0 first; Qiskit's bitstrings put clbit 0 last."""
    circuit = asymmetric()
    pub = SamplerPub.coerce((circuit, [[0.0]]), shots=4)
    prepared = _prepare(circuit, pub.parameter_values)
    counts = [{"101": 4}]  # qubit 0 = 1, qubit 1 = 0, qubit 2 = 1
    result = _sampler_result(pub, prepared, counts, 3, np.random.default_rng(0))
    assert result.data.alpha.get_counts(0) == {"101": 4}  # alpha2=q0, alpha1=0, alpha0=q2
    assert result.data.beta.get_counts(0) == {"00": 4}
    counts = [{"110": 4}]  # qubit 1 = 1
    result = _sampler_result(pub, prepared, counts, 3, np.random.default_rng(0))
    assert result.data.alpha.get_counts(0) == {"100": 4}
    assert result.data.beta.get_counts(0) == {"10": 4}
    assert result.data.alpha.shape == (1,) and result.metadata["shots"] == 4


def test_expanded_counts_are_every_shot_in_a_seeded_order() -> None:
    counts = {"01": 30, "10": 70}
    first = _expanded(counts, 100, 2, np.random.default_rng(5))
    assert np.array_equal(first, _expanded(counts, 100, 2, np.random.default_rng(5)))
    assert first[:, 1].sum() == 30 and first[:, 0].sum() == 70
    assert not np.array_equal(first, _expanded(counts, 100, 2, np.random.default_rng(6)))


def test_estimator_terms_become_platform_paulis_and_sum_with_coefficients() -> None:
    circuit = QuantumCircuit(2)
    pub = EstimatorPub.coerce((circuit, [["ZI"], [{"XY": 0.5, "II": 2.0}]]), precision=0.0)
    terms = _terms(pub)
    assert terms == [{"ZI": 1 + 0j}, {"XY": 0.5 + 0j, "II": 2.0 + 0j}]
    assert _platform_pauli("ZI", 3) == "IZI" and _platform_pauli("XY", 2) == "YX"
    paulis = ["IZ", "YX"]
    result = _estimator_result(pub, terms, [[0.25, -0.5]], paulis, 2)
    np.testing.assert_allclose(result.data.evs, [[0.25], [2.0 - 0.25]])
    assert result.data.evs.shape == (2, 1) and result.metadata["target_precision"] == 0


def test_precision_sets_shots() -> None:
    assert shots_for(0) == 0 and shots_for(0.01) == 10000 and shots_for(0.03) == 1112


def test_braket_pauli_strings_put_qubit_0_first() -> None:
    assert _pauli(Observable.Z() @ Observable.X(), [0, 2], 3) == "ZIX"
    assert _pauli(Observable.Y(), [1], 2) == "IY"
    with pytest.raises(ValueError):
        _pauli(Observable.H(), [0], 1)


def test_braket_plans_choose_jobs_by_shots_and_result_types() -> None:
    circuit = Circuit().h(0).cnot(0, 2).expectation(Observable.Z(), [2]).probability([0])
    exact = _plan(circuit, 0, {})
    assert (exact.paulis, exact.probabilities, exact.width) == (["IIZ"], True, 3)
    sampled = _plan(Circuit().h(0).x(2), 10, {})
    assert sampled.measured == [0, 2]
    measured = _plan(Circuit().h(0).x(2).measure(2).measure(0), 10, {})
    assert measured.measured == [2, 0]


def test_braket_counts_and_probabilities_are_read_over_the_measured_qubits() -> None:
    assert _projected({"101": 3, "100": 1}, [0, 2], 3) == {"11": 3, "10": 1}
    assert _projected({"10": 2}, [2, 0], 3) == {"10": 2}  # the program measured them
    probabilities = {"100": 0.25, "001": 0.75}
    np.testing.assert_allclose(
        _marginal(probabilities, Probability([2, 0]), Circuit().h(0).x(2)), [0, 0.25, 0.75, 0]
    )
