"""Programs users hold, as OpenQASM 3 the platform runs: text as it is, Braket circuits by
Braket's exporter, Qiskit circuits by Qiskit's, free parameters as ``input float``. Each
conversion is checked by the platform's own program analysis, and by running the exported
program on Braket's simulator next to the original circuit's own simulation. Qiskit's:
test_programs_qiskit.py."""

from __future__ import annotations

import numpy as np
import pytest
from braket.circuits import Circuit, FreeParameter
from braket.circuits.observables import Z
from braket.circuits.serialization import IRType
from braket.devices import LocalSimulator

from qorch.programs import Program, ProgramConversionError, to_program
from qorchestra.qasm import analyze
from tests.support.circuits import direct_probabilities


def test_text_is_taken_as_it_is_with_its_inputs() -> None:
    source = "OPENQASM 3.0;\ninput float a;\ninput angle b;\nqubit[1] q;\nrx(a + b) q[0];\n"
    program = to_program(source)
    assert program == Program(source, ("a", "b"))
    assert program.binding({"a": 1, "b": 2}) == {"a": 1.0, "b": 2.0}
    assert to_program(program) is program


def test_a_braket_circuit_is_exported_by_braket_with_its_parameters_as_inputs() -> None:
    alpha, beta = FreeParameter("alpha"), FreeParameter("beta")
    circuit = Circuit().rx(0, alpha).cnot(0, 1).ry(1, 2 * beta).h(2)
    program = to_program(circuit)

    exported = circuit.to_ir(IRType.OPENQASM).source
    assert "b[0] = measure" in exported  # Braket adds measurements to a circuit without any
    added = [line for line in exported.splitlines() if line.startswith(("bit[", "b["))]
    assert added == [
        "bit[3] b;",
        "b[0] = measure q[0];",
        "b[1] = measure q[1];",
        "b[2] = measure q[2];",
    ]
    assert program.source.strip() == "\n".join(
        line for line in exported.splitlines() if line not in added
    )
    assert sorted(program.inputs) == ["alpha", "beta"]  # in Braket's order (a set's)
    info = analyze(program.source)
    assert (info.inputs, info.qubits, info.measures) == (program.inputs, 3, False)
    assert program.binding({alpha: 0.3, "beta": 0.4}) == {"alpha": 0.3, "beta": 0.4}

    bound = circuit.make_bound_circuit({"alpha": 0.3, "beta": 0.4})
    direct = LocalSimulator("braket_sv").run(bound.probability(), shots=0).result().values[0]
    assert np.allclose(direct_probabilities(program.source, {"alpha": 0.3, "beta": 0.4}), direct)


def test_a_braket_circuit_that_measures_keeps_its_measurements() -> None:
    circuit = Circuit().h(0).cnot(0, 1).measure([0, 1])
    program = to_program(circuit)
    assert program.source == circuit.to_ir(IRType.OPENQASM).source
    assert analyze(program.source).measures


def test_a_braket_circuit_with_result_types_is_refused() -> None:
    with pytest.raises(ProgramConversionError, match="give observables"):
        to_program(Circuit().h(0).expectation(Z(), target=[0]))


def test_anything_else_is_refused_by_name() -> None:
    with pytest.raises(ProgramConversionError, match=r"not builtins\.dict"):
        to_program({"source": "OPENQASM 3.0;"})
