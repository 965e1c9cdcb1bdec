"""The ``qorchestra.qubit`` device without a stack: PennyLane's preprocessing and execution,
with jobs run in this process on the node's executor (tests.support.pennylane_jobs); and the
job runner's waiting, retries and cancelling against a scripted client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pennylane as qml
import pytest
from pennylane import numpy as pnp
from pennylane.exceptions import DeviceError

from qorch.pennylane import QorchDevice, jobs
from qorch.pennylane.jobs import Endpoint, JobRunner
from tests.support.pennylane_jobs import LocalJobs

pytestmark = pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")


def local_device(wires: Any = 2, **options: Any) -> tuple[QorchDevice, LocalJobs]:
    """The device, its jobs run in process; and those jobs."""
    dev = qml.device("qorchestra.qubit", wires=wires, **options)
    assert isinstance(dev, QorchDevice)
    runner = LocalJobs()
    dev._runner = runner  # type: ignore[assignment]
    return dev, runner


def layered(weights: Any, x: Any, wires: int) -> Any:
    """A small variational circuit: angle encoding, entangling layers, two observables."""
    qml.AngleEmbedding(x, wires=range(wires))
    qml.StronglyEntanglingLayers(weights, wires=range(wires))
    return qml.expval(qml.Z(0) @ qml.Z(1)), qml.expval(qml.X(wires - 1))


def test_parameter_shift_gradients_equal_default_qubit_and_take_one_job() -> None:
    dev, runner = local_device(3)
    weights = pnp.array(np.random.default_rng(0).uniform(0, 2, (2, 3, 3)), requires_grad=True)
    x = pnp.array([0.1, -0.4, 0.7], requires_grad=False)

    def cost(device: Any) -> Any:
        circuit = qml.QNode(layered, device, diff_method="parameter-shift")
        return lambda w: qml.math.stack(circuit(w, x, 3))[0] - 0.5 * circuit(w, x, 3)[1]

    expected = qml.grad(cost(qml.device("default.qubit", wires=3)))(weights)
    runner.specs.clear()
    got = qml.grad(cost(dev))(weights)
    np.testing.assert_allclose(got, expected, atol=1e-8)
    gradient_jobs = [s for s in runner.specs if sum(len(p["bindings"]) for p in s["programs"]) > 1]
    assert gradient_jobs and all(len(s["programs"]) == 1 for s in gradient_jobs)


def test_best_diff_method_is_parameter_shift() -> None:
    dev, _ = local_device(1)
    circuit = qml.QNode(lambda t: (qml.RX(t, 0), qml.expval(qml.Z(0)))[1], dev)
    assert qml.workflow.get_best_diff_method(circuit)(0.1) == "parameter-shift"
    assert not dev.supports_derivatives()


def test_templates_and_decompositions_equal_default_qubit() -> None:
    dev, _ = local_device(4)

    def circuit() -> Any:
        qml.QFT(wires=range(3))
        qml.MultiRZ(0.3, wires=[0, 1, 3])
        qml.CRot(0.1, 0.2, 0.3, wires=[3, 0])
        qml.DoubleExcitation(0.4, wires=[0, 1, 2, 3])
        qml.QubitUnitary(qml.matrix(qml.QFT(wires=range(4))), wires=range(4))
        qml.StatePrep(np.array([0.6, 0.8j]), wires=2)
        return qml.probs(), qml.expval(qml.Hermitian(np.diag([1.0, 2, 3, 4]), wires=[1, 3]))

    got = qml.QNode(circuit, dev)()
    expected = qml.QNode(circuit, qml.device("default.qubit", wires=4))()
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, reference, atol=1e-9)


def test_noise_goes_to_the_density_matrix_pool() -> None:
    dev, runner = local_device(2, pool="local-sv")

    def circuit() -> Any:
        qml.Hadamard(0)
        qml.CNOT([0, 1])
        qml.DepolarizingChannel(0.2, wires=0)
        qml.AmplitudeDamping(0.3, wires=1)
        return qml.expval(qml.Z(0) @ qml.Z(1)), qml.probs(wires=[1])

    got = qml.QNode(circuit, dev)()
    expected = qml.QNode(circuit, qml.device("default.mixed", wires=2))()
    assert [s["pool"] for s in runner.specs] == ["local-dm"]
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, reference, atol=1e-9)


def test_shots_from_set_shots_with_a_shot_vector() -> None:
    dev, runner = local_device(2, seed=3)

    @qml.set_shots(shots=[100, (50, 2)])
    @qml.qnode(dev)
    def circuit() -> Any:
        qml.Hadamard(0)
        qml.CNOT([0, 1])
        return qml.sample(wires=[0, 1]), qml.counts(), qml.expval(qml.Z(0) @ qml.Z(1))

    got = circuit()
    assert runner.specs[-1]["shots"] == 200 and runner.specs[-1]["result"]["type"] == "counts"
    assert [entry[0].shape for entry in got] == [(100, 2), (50, 2), (50, 2)]
    assert all(set(entry[1]) <= {"00", "11"} and entry[2] == 1.0 for entry in got)


def test_mid_circuit_measurements_are_deferred() -> None:
    dev, _ = local_device(3)

    def circuit(x: float) -> Any:
        qml.RY(x, 0)
        m = qml.measure(0)
        qml.cond(m, qml.X)(1)
        return qml.expval(qml.Z(1)), qml.probs(op=m)

    got = qml.QNode(circuit, dev)(0.8)
    expected = qml.QNode(circuit, qml.device("default.qubit", wires=3))(0.8)
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, reference, atol=1e-9)


@pytest.mark.parametrize(
    ("measurement", "message"),
    [
        (lambda: qml.state(), "needs amplitudes"),
        (lambda: qml.sample(wires=0), "needs shots"),
        (lambda: qml.vn_entropy(wires=0), "needs amplitudes"),
    ],
)
def test_what_needs_amplitudes_or_shots_is_refused_before_any_job(
    measurement: Any, message: str
) -> None:
    dev, runner = local_device(1)
    circuit = qml.QNode(lambda: (qml.Hadamard(0), measurement())[1], dev)
    with pytest.raises(DeviceError, match=message):
        circuit()
    assert runner.specs == []


def test_tracker_counts_batches_jobs_and_executions() -> None:
    dev, _ = local_device(1)
    circuit = qml.QNode(lambda t: (qml.RX(t, 0), qml.expval(qml.Z(0)))[1], dev)
    with qml.Tracker(dev) as tracker:
        qml.grad(circuit)(pnp.array(0.3, requires_grad=True))
    assert tracker.totals["jobs"] == tracker.totals["batches"] == 2
    assert tracker.totals["executions"] == 3  # the circuit, then its two shifts


def test_endpoint_reads_the_commands_variables() -> None:
    env = {"QORCH_API_URL": "http://api:9000/", "QORCH_API_KEY": "k"}
    assert Endpoint.resolve(env=env) == Endpoint("http://api:9000", "k")
    assert Endpoint.resolve(env={"QORCH_API_PORT": "8123"}).url == "http://127.0.0.1:8123"
    assert Endpoint.resolve("http://x", "y", env=env) == Endpoint("http://x", "y")


class RateLimited(Exception):
    """What the SDK raises for a 429."""

    status = 429
    retry_after = 0.5


class ScriptedClient:
    """A QorchClient whose answers are scripted: ``submits`` raise or answer in turn, and the
    job's status goes through ``statuses``."""

    instances: list[ScriptedClient] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.submits: list[Any] = list(self.script["submits"])
        self.statuses: list[str] = list(self.script["statuses"])
        self.cancelled: list[str] = []
        ScriptedClient.instances.append(self)

    script: dict[str, list[Any]] = {}

    def __enter__(self) -> ScriptedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        answer = self.submits.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return {"id": "job-1", "status": "QUEUED", "warnings": []}

    def job(self, job_id: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"id": job_id, "status": status, "error": "boom" if status == "FAILED" else None}

    def result(self, job_id: str) -> dict[str, Any]:
        return {"result": {"programs": []}}

    def cancel(self, job_id: str) -> dict[str, Any]:
        self.cancelled.append(job_id)
        return {}


class FakeClock:
    """Time that passes only when the runner pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[JobRunner, FakeClock]]:
    monkeypatch.setattr(jobs, "QorchClient", ScriptedClient)
    ScriptedClient.instances.clear()
    clock = FakeClock()
    yield JobRunner(Endpoint("http://x", ""), clock=clock, pause=clock.pause), clock


def test_runner_waits_out_a_rate_limit_and_polls_until_the_end(
    scripted: tuple[JobRunner, FakeClock],
) -> None:
    runner, clock = scripted
    ScriptedClient.script = {
        "submits": [RateLimited("slow down"), "ok"],
        "statuses": ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"],
    }
    assert runner.run([{}], timeout=10) == [{"programs": []}]
    assert clock.pauses[0] == 0.5  # as the API asked
    assert clock.pauses[1:] == [0.005, 0.01, 0.02]  # doubling between looks


def test_runner_reports_a_failed_job(scripted: tuple[JobRunner, FakeClock]) -> None:
    runner, _ = scripted
    ScriptedClient.script = {"submits": ["ok"], "statuses": ["RUNNING", "FAILED"]}
    with pytest.raises(DeviceError, match="job-1 FAILED: boom"):
        runner.run([{}], timeout=10)


def test_runner_cancels_a_job_past_its_timeout(scripted: tuple[JobRunner, FakeClock]) -> None:
    runner, clock = scripted
    ScriptedClient.script = {"submits": ["ok"], "statuses": ["RUNNING"]}
    with pytest.raises(DeviceError, match="did not finish within 2s"):
        runner.run([{}], timeout=2)
    assert clock.now == pytest.approx(2.0)
    assert ScriptedClient.instances[0].cancelled == ["job-1"]


def test_runner_looks_less_often_at_a_long_job(scripted: tuple[JobRunner, FakeClock]) -> None:
    runner, clock = scripted
    ScriptedClient.script = {"submits": ["ok"], "statuses": ["RUNNING"] * 400 + ["SUCCEEDED"]}
    runner.run([{}], timeout=None)
    assert max(clock.pauses) == jobs.LONGEST_POLL_S  # about once a second after ten seconds
    assert clock.pauses[5:8] == [jobs.SHORT_POLL_S] * 3  # while the job is young
