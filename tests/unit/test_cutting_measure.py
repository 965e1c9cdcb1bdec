"""Gate cuts without ancillas: signed mid-circuit measurements, the two-halves circuit of
issue 19 on 5-qubit nodes, shots allocated by QPD weight and the reported standard error.

Subexperiments run through the node agent's own executor (Braket's LocalSimulator); no Kafka,
no database.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nodes.executors.base import ExecutionError
from nodes.executors.local import LocalExecutor
from qorchestra.cutting import cut_program, plan_cuts
from qorchestra.cutting.signs import SIGN_REGISTER, deferred, signed_measurements
from tests.support.circuits import expectations
from tests.support.cut_circuits import two_halves

OBSERVABLES = ["ZZZZZZZZ", "XIIIIIIZ", "IIIZZIII", "IZIIIIYI"]


@pytest.fixture(scope="module")
def executor() -> LocalExecutor:
    return LocalExecutor("braket_sv")


def signed(body: str, measurements: int) -> str:
    return f"OPENQASM 3.0;\nqubit[2] q;\nbit[{measurements}] {SIGN_REGISTER};\n{body}"


def test_a_signed_measurement_weights_values_by_its_outcome(executor: LocalExecutor) -> None:
    theta = 0.7
    source = signed(f"ry({theta}) q[0];\nqorch_sign[0] = measure q[0];\nh q[0];\n", 1)
    # E[sign] = <Z> before the measurement = cos θ; after it the qubit is |b>, and H|b> has
    # <X> = sign and <Z> = 0: E[sign · X] = 1, E[sign · Z] = 0.
    values = expectations(executor, source, 2, ["II", "XI", "ZI"], [{}])[0]
    assert values == pytest.approx([math.cos(theta), 1.0, 0.0], abs=1e-12)
    sampled = expectations(executor, source, 2, ["II", "XI"], [{}], shots=20_000)[0]
    assert sampled[0] == pytest.approx(math.cos(theta), abs=5 * math.sqrt(1 / 20_000))
    assert sampled[1] == pytest.approx(1.0, abs=1e-12)


def test_the_deferred_form_and_its_refusals(executor: LocalExecutor) -> None:
    source = signed("h q[1];\nqorch_sign[1] = measure q[1];\nqorch_sign[0] = measure q[0];\n", 2)
    assert signed_measurements(source) == 2
    form = deferred(source, ("ZI", "IX"))
    assert form.extra_qubits == 2 and form.observables == ("ZIZZ", "IXZZ")
    assert f"qubit[2] {SIGN_REGISTER};" in form.source
    assert f"cnot q[1], {SIGN_REGISTER}[1];" in form.source and "measure" not in form.source
    twice = signed("qorch_sign[0] = measure q[0];\nqorch_sign[0] = measure q[1];\n", 2)
    with pytest.raises(ValueError, match="declares 2 bits"):
        deferred(twice, ("ZZ",))
    with pytest.raises(ExecutionError, match="declares 2 bits") as error:
        expectations(executor, twice, 2, ["ZZ"], [{}])
    assert not error.value.retryable


def test_the_two_halves_circuit_fits_5_qubit_nodes_at_overhead_81() -> None:
    plan = plan_cuts(two_halves().qasm(), 5)
    assert plan.sampling_overhead <= 81 + 1e-9
    assert (plan.gate_cuts, plan.wire_cuts) == (2, 0)
    assert [s.width for s in plan.subcircuits] == [4, 4]
    assert plan.summary()["subcircuits"] == [
        {"qubits": [0, 1, 2, 3], "width": 4, "ancillas": 0},
        {"qubits": [4, 5, 6, 7], "width": 4, "ancillas": 0},
    ]


def test_the_two_halves_circuit_reconstructs_exactly_and_with_shots(
    executor: LocalExecutor,
) -> None:
    case = two_halves()
    experiment = cut_program(case.qasm(), OBSERVABLES, 5)
    assert all(p.qubits <= 5 for p in experiment.programs)
    bindings: list[dict[str, float]] = [{}]
    direct = np.array(expectations(executor, case.qasm(), 8, OBSERVABLES, bindings))
    exact = [
        expectations(executor, p.source, p.qubits, p.observables, bindings)
        for p in experiment.programs
    ]
    assert np.allclose(experiment.reconstruct(exact, bindings), direct, atol=1e-10, rtol=0)
    assert np.abs(direct).min() > 0.04  # not trivially zero

    shots = experiment.allocate_shots(2000, bindings)
    for sub in range(2):  # each subcircuit's budget: 2000 per program, split by weight
        mine = [s for s, p in zip(shots, experiment.programs, strict=True) if p.subcircuit == sub]
        assert sum(mine) == 2000 * len(mine) and min(mine) >= 1 and len(set(mine)) > 1
    sampled = [
        expectations(executor, p.source, p.qubits, p.observables, bindings, shots=s)
        for p, s in zip(experiment.programs, shots, strict=True)
    ]
    knitted = np.array(experiment.reconstruct(sampled, bindings))
    error = np.array(experiment.standard_errors(sampled, bindings, shots))
    assert np.all(error > 0) and np.all(error < 0.05)
    # Four standard errors; the error is no bigger than the exact-value one by much either.
    assert np.all(np.abs(knitted - direct) <= 4 * error), (knitted - direct, error)
    truth = np.array(experiment.standard_errors(exact, bindings, shots))
    assert np.allclose(error, truth, rtol=0.2)


def test_controlled_rotations_are_cut_in_place_and_reconstruct_exactly(
    executor: LocalExecutor,
) -> None:
    # pairs entangled inside by iswap (which cannot be cut), joined only by controlled
    # rotations: the plan must cut all three of them, at their own gamma
    source = (
        "OPENQASM 3.0;\ninput float a;\nqubit[4] q;\n"
        "ry(0.7) q[0];\nry(a) q[1];\nrx(0.4) q[2];\nry(1.1) q[3];\n"
        "cnot q[0], q[1];\niswap q[2], q[3];\nctrl @ rx(a) q[1], q[2];\n"
        "ry(0.5) q[1];\nrx(0.3) q[2];\nnegctrl @ ry(1.3) q[0], q[3];\n"
        "ctrl @ rz(2 * a) q[2], q[1];\nry(0.9) q[1];\nrx(0.2) q[2];\nh q[3];\n"
        "iswap q[0], q[1];\niswap q[2], q[3];\n"
    )
    observables = ["ZZZZ", "XIIX", "IZZI", "IYXI", "ZIIZ"]
    bindings = [{"a": 0.8}, {"a": -1.7}]
    experiment = cut_program(source, observables, 2)
    plan = experiment.plan
    assert (plan.gate_cuts, plan.wire_cuts) == (3, 0)
    # two angles depend on the input (gamma 3 at most), the fixed one has gamma = 1 + 2|sin(1.3/2)|
    assert plan.sampling_overhead == pytest.approx((9 * (1 + 2 * math.sin(0.65))) ** 2)
    results = [
        expectations(executor, p.source, p.qubits, p.observables, bindings)
        for p in experiment.programs
    ]
    direct = expectations(executor, source, 4, observables, bindings)
    assert np.allclose(experiment.reconstruct(results, bindings), direct, atol=1e-10, rtol=0)
    assert np.abs(direct).max() > 0.5
