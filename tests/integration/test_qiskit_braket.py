"""Qiskit's V2 primitives (``qorch.qiskit``) and the Braket device (``qorch.braket``) against a
real platform, compared with the libraries' own references: ``StatevectorEstimator`` exactly
(1e-10), ``StatevectorSampler`` within 5 standard deviations per outcome, ``LocalSimulator``
exactly with ``shots=0`` and within statistical bounds with shots; and the examples of
docs/qiskit.md and docs/braket.md run as a user would run them.

Real parts: the API over HTTP and gRPC, the orchestrator and a ``local-sv`` node agent (in
threads), Postgres (a database of its own) and the broker, once for the module."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from braket.circuits import Circuit, FreeParameter, Observable
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program as OpenQASMProgram
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qiskit.circuit.random import random_circuit
from qiskit.primitives import StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import SparsePauliOp

from qorch.braket import QorchDevice, QorchTask
from qorch.client import Client
from qorch.qiskit import Estimator, Sampler
from tests.support.api import RunningApi, serving_local_sv

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DEADLINE_S = 120.0
SIGMAS = 5.0


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API, the orchestrator and an agent of ``local-sv``, on a database of their own."""
    with serving_local_sv(database_url, kafka_bootstrap) as served:
        yield served


@pytest.fixture(scope="module")
def key(api: RunningApi) -> str:
    return api.new_key(f"qiskit-braket-{uuid.uuid4().hex[:8]}", ["read", "submit"])


@pytest.fixture(scope="module")
def client(api: RunningApi, key: str) -> Iterator[Client]:
    with Client(api.url, key, api.grpc_target, timeout=60) as client:
        yield client


def within(observed: Mapping[str, int], probabilities: Mapping[str, float], shots: int) -> None:
    """Every outcome's frequency within SIGMAS standard deviations of its probability (at least
    SIGMAS shots' worth, where a rare outcome's count is far from normal), and nothing observed
    that cannot happen."""
    for outcome in set(observed) | set(probabilities):
        p = probabilities.get(outcome, 0.0)
        p_hat = observed.get(outcome, 0) / shots
        if p < 1e-12:
            assert p_hat == 0, (outcome, p_hat, observed)
            continue
        sigma = max(np.sqrt(p * (1 - p) / shots), 1 / shots)
        assert abs(p_hat - p) <= SIGMAS * sigma, (outcome, p_hat, p, observed)


# ---------------------------------------------------------------- Qiskit


def parametrised_random(qubits: int, depth: int, seed: int) -> QuantumCircuit:
    """Qiskit's random circuit with a layer of parametrised rotations on top."""
    circuit = random_circuit(qubits, depth, max_operands=2, seed=seed)
    for q in range(qubits):
        circuit.ry(Parameter(f"a{seed}_{q}"), q)
    circuit.rz(Parameter(f"b{seed}"), 0)
    return circuit


def test_the_estimator_equals_qiskits_reference_on_random_pubs(client: Client) -> None:
    rng = np.random.default_rng(7)
    pubs: list[tuple[Any, ...]] = []
    for seed, (qubits, shape, obs_shape) in enumerate(
        [(3, (4,), (4,)), (2, (2, 3), (1, 3)), (4, (3, 1), (2,)), (1, (), ())]
    ):
        circuit = parametrised_random(qubits, 3, seed)
        values = rng.uniform(-np.pi, np.pi, (*shape, circuit.num_parameters))
        labels = ["".join(rng.choice(list("IXYZ"), qubits)) for _ in range(6)]
        observables = np.empty(obs_shape, dtype=object)
        for k, index in enumerate(np.ndindex(*obs_shape)):
            if k % 2:
                chosen = [labels[(k + j) % 6] for j in range(3)]
                coefficients = rng.normal(size=3) + 0.5
                observables[index] = SparsePauliOp(chosen, coefficients)
            else:
                observables[index] = labels[k % 6]
        pubs.append((circuit, observables.tolist() if obs_shape else labels[0], values))
    pubs.append((QuantumCircuit(2), SparsePauliOp(["II", "ZI"], [0.5, 2.0])))

    estimator = Estimator(client=client)
    got = estimator.run(pubs).result()
    want = StatevectorEstimator().run(pubs).result()

    assert len(got) == len(want) and len(got.metadata["job_ids"]) == 1  # one job
    for ours, theirs in zip(got, want, strict=True):
        assert ours.data.evs.shape == theirs.data.evs.shape
        np.testing.assert_allclose(ours.data.evs, theirs.data.evs, atol=1e-10, rtol=0)
        assert ours.data.stds.shape == theirs.data.stds.shape
        assert ours.metadata["target_precision"] == theirs.metadata["target_precision"] == 0


def test_the_estimator_samples_at_a_precision(client: Client) -> None:
    circuit = parametrised_random(2, 2, 11)
    values = np.random.default_rng(1).uniform(-1, 1, (3, circuit.num_parameters))
    pub = (circuit, [["ZZ"], ["XI"], ["IY"]], values[None, :, :])  # shape (3, 3)
    got = Estimator(client=client).run([pub], precision=0.02).result()[0]
    want = StatevectorEstimator().run([pub]).result()[0]
    assert got.metadata["shots"] == 2500 and got.metadata["target_precision"] == 0.02
    assert np.all(got.data.stds > 0)
    assert np.all(np.abs(got.data.evs - want.data.evs) <= SIGMAS * 0.02)


def test_the_sampler_matches_qiskits_reference_on_random_pubs(client: Client) -> None:
    rng = np.random.default_rng(3)
    shots = 2000
    pubs: list[tuple[Any, ...]] = []
    for seed, (qubits, shape) in enumerate([(3, (3,)), (2, (2, 2)), (4, ())]):
        circuit = parametrised_random(qubits, 3, 100 + seed)
        circuit.measure_all()  # register "meas"
        pubs.append((circuit, rng.uniform(-np.pi, np.pi, (*shape, circuit.num_parameters))))
    # Asymmetric: two registers, bits measured out of order, one bit never measured, and
    # qubits whose outcomes are certain (so a reversed bit order cannot pass).
    q = QuantumRegister(3)
    alpha, beta = ClassicalRegister(3, "alpha"), ClassicalRegister(2, "beta")
    odd = QuantumCircuit(q, alpha, beta)
    odd.x(0)
    odd.ry(Parameter("t"), 2)
    odd.measure(0, alpha[2])
    odd.measure(2, alpha[0])
    odd.measure(1, beta[1])
    pubs.append((odd, [[0.0], [np.pi], [1.1]], 500))

    sampler = Sampler(client=client, seed=5)
    got = sampler.run(pubs, shots=shots).result()
    reference = StatevectorSampler(seed=9).run(pubs, shots=shots).result()

    assert len(got.metadata["job_ids"]) == 2  # one job per shots value
    for (circuit, values, *_), ours, theirs in zip(pubs, got, reference, strict=True):
        assert ours.metadata["shots"] == theirs.metadata["shots"]
        assert set(ours.data.keys()) == set(theirs.data.keys())
        for name in theirs.data:
            mine, ref = ours.data[name], theirs.data[name]
            assert (mine.shape, mine.num_bits, mine.num_shots) == (
                ref.shape,
                ref.num_bits,
                ref.num_shots,
            )
            for index in np.ndindex(*ref.shape):
                bound = circuit.assign_parameters(np.asarray(values)[index])
                exact = exact_register_probabilities(bound, name)
                within(mine.get_counts(index), exact, mine.num_shots)

    # The certain outcomes, bit for bit: alpha = (q2 at pi, 0, q0=1) -> "101"; beta "0 0".
    odd_result = got[-1].data
    assert odd_result.alpha.get_counts(0) == {"100": 500}
    assert odd_result.alpha.get_counts(1) == {"101": 500}
    assert odd_result.beta.get_counts(1) == {"00": 500}


def exact_register_probabilities(circuit: QuantumCircuit, register: str) -> dict[str, float]:
    """A register's exact distribution, from Qiskit's statevector of the unmeasured circuit."""
    from qiskit.quantum_info import Statevector

    from qorch.qiskit import _final_measurements

    mapping = _final_measurements(circuit)
    size = next(r.size for r in circuit.cregs if r.name == register)
    state = Statevector(circuit.remove_final_measurements(inplace=False))
    out: dict[str, float] = {}
    for bits, p in state.probabilities_dict().items():  # qubit 0 last
        key = "".join(
            bits[-1 - mapping[(register, k)]] if (register, k) in mapping else "0"
            for k in reversed(range(size))
        )
        out[key] = out.get(key, 0.0) + float(p)
    return out


# ---------------------------------------------------------------- Braket


SIM = LocalSimulator("braket_sv")


def exact_circuits() -> list[Circuit]:
    theta = FreeParameter("theta")
    one = Circuit().h(0).cnot(0, 2).ry(1, 0.4).rx(2, theta)
    one.expectation(Observable.Z() @ Observable.X(), [0, 2])
    one.expectation(Observable.Y(), [1])
    one.probability([2, 0])
    one.variance(Observable.Z() @ Observable.Z(), [1, 2])
    two = Circuit().x(1).ry(0, 0.3).cnot(1, 0)
    two.probability()
    two.expectation(Observable.Z())  # per qubit
    gapped = Circuit().h(0).x(2).ry(2, 0.2)  # qubit 1 unused
    gapped.probability()
    gapped.expectation(Observable.X())
    gapped.expectation(Observable.X() @ Observable.Z(), [0, 2])
    gapped.variance(Observable.Z(), [2])
    return [one, two, gapped]


def test_the_braket_device_equals_local_simulator_exactly(client: Client) -> None:
    device = QorchDevice(pool="local-sv", client=client)
    circuits = exact_circuits()
    task = device.run(circuits[0], shots=0, inputs={"theta": 0.7})
    assert isinstance(task, QorchTask) and task.state() in {"QUEUED", "RUNNING", "COMPLETED"}
    results = [task.result(), *device.run_batch(circuits[1:], shots=0).results()]
    expected = [
        SIM.run(circuits[0], shots=0, inputs={"theta": 0.7}).result(),
        *(SIM.run(circuit, shots=0).result() for circuit in circuits[1:]),
    ]
    assert task.state() == "COMPLETED"
    with pytest.raises(ValueError, match="products of I, X, Y and Z"):
        device.run(Circuit().h(0).expectation(2 * Observable.Z(), [0]), shots=0)
    with pytest.raises(ValueError, match="needs result types"):
        device.run(Circuit().h(0), shots=0)
    for ours, theirs, circuit in zip(results, expected, circuits, strict=True):
        assert len(ours.values) == len(theirs.values)
        for mine, ref in zip(ours.values, theirs.values, strict=True):
            np.testing.assert_allclose(mine, ref, atol=1e-10, rtol=0)
        for k, result_type in enumerate(circuit.result_types):
            # (LocalSimulator renumbers the targets of a circuit with unused qubits, so that its
            # own get_value_by_result_type misses them; compare by position.)
            np.testing.assert_allclose(
                ours.get_value_by_result_type(result_type), theirs.values[k], atol=1e-10
            )
        assert ours.task_metadata.shots == 0


def test_the_braket_device_samples_like_local_simulator(client: Client) -> None:
    shots = 3000
    bell = Circuit().h(0).cnot(0, 1).ry(2, 0.9)  # asymmetric: qubit 2 leans to 0
    gapped = Circuit().x(0).h(2)  # qubit 1 unused: not measured
    measured = Circuit().x(2).h(1).measure(2).measure(0)  # measured out of order
    observed = Circuit().h(0).cnot(0, 1).x(2)
    observed.expectation(Observable.X() @ Observable.X(), [0, 1]).probability([2])
    program = OpenQASMProgram(
        source=("OPENQASM 3.0;\ninput float t;\nqubit[2] q;\nrx(t) q[0];\ncnot q[0], q[1];\n"),
        inputs={"t": 1.0},
    )
    device = QorchDevice(client=client, seed=3)
    specs = [bell, gapped, measured, observed, program]
    results = device.run_batch(specs, shots=shots).results()
    for spec, ours in zip(specs, results, strict=True):
        theirs = SIM.run(spec, shots=shots).result()
        assert ours.measured_qubits == theirs.measured_qubits, spec
        assert ours.measurements.shape == (shots, len(theirs.measured_qubits))
        exact = {k: v / shots for k, v in theirs.measurement_counts.items()}
        exact_probs = exact_distribution(spec, theirs.measured_qubits)
        within(ours.measurement_counts, exact_probs, shots)
        assert set(ours.measurement_counts) <= set(exact_probs) | set(exact)
    xx, p2 = results[3].values
    assert xx == pytest.approx(1.0)  # |00> + |11> in the X basis: XX = +1 every shot
    assert list(p2) == [0.0, 1.0]


def exact_distribution(spec: Circuit | OpenQASMProgram, measured: list[int]) -> dict[str, float]:
    """LocalSimulator's exact probabilities over ``measured`` (in that order)."""
    if isinstance(spec, OpenQASMProgram):
        circuit, inputs = Circuit.from_ir(spec.source), spec.inputs or {}
    else:
        circuit, inputs = spec, {}
    bare = Circuit([i for i in circuit.instructions if type(i.operator).__name__ != "Measure"])
    bare.add(circuit.basis_rotation_instructions)
    bare.probability(measured)
    vector = SIM.run(bare, shots=0, inputs=inputs).result().values[0]
    width = len(measured)
    return {format(i, f"0{width}b"): float(p) for i, p in enumerate(vector) if p > 1e-15}


def test_a_braket_task_can_be_cancelled_and_awaited(client: Client) -> None:
    import asyncio

    device = QorchDevice(client=client)
    circuit = Circuit().h(0).probability()
    task = device.run(circuit, shots=0)
    result = asyncio.run(_awaited(task))
    np.testing.assert_allclose(result.values[0], [0.5, 0.5], atol=1e-10)
    task.cancel()  # over already: nothing to do
    assert task.state() == "COMPLETED"


async def _awaited(task: QorchTask) -> Any:
    return await task.async_result()


# ---------------------------------------------------------------- the guides' examples


@pytest.mark.parametrize("script", ["qiskit_primitives.py", "braket_device.py"])
def test_the_examples_of_the_guides_run(api: RunningApi, key: str, script: str) -> None:
    env = {
        **os.environ,
        "QORCH_API_URL": api.url,
        "QORCH_GRPC_TARGET": api.grpc_target,
        "QORCH_API_KEY": key,
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout, out.stdout
