"""Qiskit circuits as OpenQASM 3 the platform runs: exported by Qiskit's own exporter, with
their parameters as ``input float`` and the names Qiskit gives them mapped back, checked by the
platform's program analysis and by running them on Braket's simulator next to Qiskit's own
statevector. Skipped where qiskit is not installed (``pip install qorchestra[qiskit]``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from qorch.programs import to_program
from qorchestra.qasm import analyze
from tests.support.circuits import direct_probabilities

qiskit = pytest.importorskip("qiskit")


def test_a_qiskit_circuit_is_exported_by_qiskit_with_float_inputs() -> None:
    from qiskit.circuit import Parameter, ParameterVector

    theta, w = Parameter("theta"), ParameterVector("w", 2)
    circuit = qiskit.QuantumCircuit(2)
    circuit.rx(theta, 0)
    circuit.ry(2 * w[0], 1)
    circuit.cx(0, 1)
    circuit.rz(w[1], 1)
    program = to_program(circuit)

    assert "input float theta;" in program.source and "float[64]" not in program.source
    assert "include" not in program.source  # Braket does not ship stdgates.inc
    assert program.inputs == ("theta", "_w_0_", "_w_1_")  # Qiskit renames w[0], w[1]
    assert program.names == {"w[0]": "_w_0_", "w[1]": "_w_1_"}
    assert program.binding({theta: 0.1, w[0]: 0.2, "w[1]": 0.3}) == {
        "theta": 0.1,
        "_w_0_": 0.2,
        "_w_1_": 0.3,
    }
    info = analyze(program.source)
    assert (info.inputs, info.qubits, info.measures) == (program.inputs, 2, False)


def _every_standard_gate() -> tuple[Any, dict[Any, float]]:
    """A 3-qubit circuit of Qiskit's standard gates, two of its angles free."""
    from qiskit.circuit import Parameter

    a, b = Parameter("a"), Parameter("b")
    qc = qiskit.QuantumCircuit(3)
    qc.h(0)
    qc.rx(a, 1)
    qc.ry(0.4, 2)
    qc.cx(0, 1)
    qc.sx(2)
    qc.u(0.1, 0.2, 0.3, 0)
    qc.p(b, 1)
    qc.cp(0.7, 1, 2)
    qc.ccx(0, 1, 2)
    qc.crx(a, 2, 0)
    qc.cy(1, 0)
    qc.sdg(2)
    qc.tdg(1)
    qc.rzz(b, 0, 2)
    qc.rxx(0.3, 1, 2)
    qc.ryy(0.5, 0, 1)
    qc.cswap(2, 0, 1)
    qc.iswap(0, 2)
    qc.id(1)
    qc.barrier()
    return qc, {a: 0.9, b: -1.3}


def test_a_qiskit_circuit_runs_on_braket_as_it_does_on_qiskit() -> None:
    from qiskit.quantum_info import Statevector

    circuit, values = _every_standard_gate()
    program = to_program(circuit)
    got = np.asarray(direct_probabilities(program.source, program.binding(values)))

    want = Statevector(circuit.assign_parameters(values)).probabilities_dict()
    width = circuit.num_qubits
    expected = np.zeros(2**width)
    for bits, p in want.items():  # Qiskit writes qubit 0 last; Braket first
        expected[int(bits[::-1], 2)] = p
    assert np.allclose(got, expected, atol=1e-9)
    assert math.isclose(got.sum(), 1.0)


def test_a_measured_qiskit_circuit_keeps_its_measurements() -> None:
    circuit = qiskit.QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    info = analyze(to_program(circuit).source)
    assert info.measures and info.qubits == 2
