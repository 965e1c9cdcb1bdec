"""Training and minimisation through the whole platform: every step's circuits run on the node
agents over Kafka, the orchestrator assembles gradients, steps the optimizer, checkpoints.

Reference values are computed here directly on Braket's LocalSimulator (finite differences) or
with numpy (the lowest eigenvalue), never through the platform.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from proto.qorch.v1 import jobs_pb2
from qorch.client import ApiError, QorchClient
from qorch.stack import Stack
from qorchestra.training import objectives, trainer
from qorchestra.training.hamiltonians import H2, ground_energy
from qorchestra.training.spec import TRAIN_EXAMPLE as EXAMPLE_TRAIN
from qorchestra.training.spec import MinimizeJob, TrainJob
from tests.support.stack import running_stack
from tests.support.training import run_request
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SIM = LocalSimulator("braket_sv")


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        database_url, kafka_bootstrap, tmp_path_factory, fragment_bindings=64
    ) as stack:
        yield stack


def run(client: QorchClient, spec: dict[str, Any]) -> tuple[str, list[jobs_pb2.JobEvent]]:
    job = client.submit(spec)
    events = list(client.watch(job["id"]))
    assert events[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED, events[-1].message
    return job["id"], events


def small_classifier(seed: int = 5, **training: Any) -> dict[str, Any]:
    return {
        "kind": "train",
        "seed": seed,
        "model": {"qubits": 3, "layers": 1},
        "data": {"builtin": "moons", "samples": 12, "validation_fraction": 0.25},
        "training": {"loss": "bce", "epochs": 1, "batch_size": 64, **training},
    }


# ---------------------------------------------------------------- gradients against references


def direct_readout(source: str, inputs: dict[str, float], observables: list[str]) -> np.ndarray:
    """Expectation values straight from LocalSimulator (the identity is 1)."""
    pragmas = []
    for obs in observables:
        factors = [f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I"]
        if factors:
            pragmas.append("#pragma braket result expectation " + " @ ".join(factors))
    program = Program(source=source + "\n".join(pragmas) + "\n", inputs=inputs)
    values = iter(SIM.run(program, shots=0).result().values)
    return np.asarray([next(values) if set(obs) - {"I"} else 1.0 for obs in observables])


def train_loss(spec: TrainJob, setup: trainer.Setup, weights: np.ndarray) -> float:
    """The batch loss at ``weights``, every circuit run directly on LocalSimulator."""
    assert setup.data is not None and setup.scaling is not None
    samples = list(setup.train)
    scaled = setup.scaling.apply(setup.data.features[samples])
    rows = []
    for features in scaled:
        inputs = {f"x{q}": features[q % len(features)] for q in range(setup.model.qubits)}
        inputs |= dict(zip(setup.model.weight_inputs, weights, strict=True))
        rows.append(direct_readout(setup.model.source, inputs, list(setup.observables)))
    labels = setup.data.labels[samples]
    return objectives.evaluate(np.asarray(rows), labels, setup.classes, spec.training.loss).loss


def central_differences(loss: Any, w: np.ndarray, h: float = 1e-4) -> np.ndarray:
    grad = np.zeros_like(w)
    for k in range(len(w)):
        e = np.zeros_like(w)
        e[k] = h
        grad[k] = (loss(w + e) - loss(w - e)) / (2 * h)
    return grad


def test_training_gradient_equals_finite_differences(client: QorchClient) -> None:
    spec_json = small_classifier(optimizer={"name": "sgd", "learning_rate": 0.05})
    job_id, _ = run(client, spec_json)
    assembled = np.asarray(client.checkpoint(job_id)["state"]["last_gradient"])

    spec = TrainJob.model_validate(spec_json)
    setup = trainer.build_setup(spec, 20)
    w0 = np.asarray(trainer.start(spec, setup)[0]["weights"])
    reference = central_differences(lambda w: train_loss(spec, setup, w), w0)
    assert np.max(np.abs(assembled - reference)) < 1e-6


def test_minimize_gradient_equals_finite_differences(client: QorchClient) -> None:
    spec_json = {
        "kind": "minimize",
        "seed": 11,
        "hamiltonian": {"builtin": "h2"},
        "ansatz": {"type": "hardware_efficient", "layers": 1},
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
        "steps": 1,
    }
    job_id, _ = run(client, spec_json)
    assembled = np.asarray(client.checkpoint(job_id)["state"]["last_gradient"])

    spec = MinimizeJob.model_validate(spec_json)
    setup = trainer.build_setup(spec, 20)
    w0 = np.asarray(trainer.start(spec, setup)[0]["weights"])
    coefficients = np.asarray([c for c, _ in H2])

    def energy(w: np.ndarray) -> float:
        inputs = dict(zip(setup.model.weight_inputs, w, strict=True))
        readout = direct_readout(setup.model.source, inputs, [p for _, p in H2])
        return float(readout @ coefficients)

    reference = central_differences(energy, w0)
    assert np.max(np.abs(assembled - reference)) < 1e-6


def test_adjoint_gradient_equals_parameter_shift_through_the_platform(
    client: QorchClient,
) -> None:
    """The agents' adjoint gradient, assembled by the orchestrator, equals parameter shift run
    here on Braket's LocalSimulator (every shifted circuit), to 1e-10."""
    spec_json = small_classifier(
        optimizer={"name": "sgd", "learning_rate": 0.05}, gradient="adjoint"
    )
    job_id, events = run(client, spec_json)
    assembled = np.asarray(client.checkpoint(job_id)["state"]["last_gradient"])
    assert any(e.type == "step" for e in events)

    shift = TrainJob.model_validate(spec_json)
    shift.training.gradient = "parameter_shift"
    setup = trainer.build_setup(shift, 20)
    state, request = trainer.start(shift, setup)
    outcome = trainer.advance(shift, setup, state, request, run_request(setup, request))
    reference = np.asarray(outcome.state["last_gradient"])
    assert np.max(np.abs(reference)) > 1e-3
    assert np.max(np.abs(assembled - reference)) < 1e-10


# ---------------------------------------------------------------- learning


def test_minimize_reaches_the_ground_energy_of_h2(client: QorchClient) -> None:
    job_id, events = run(
        client,
        {
            "kind": "minimize",
            "name": "h2",
            "seed": 3,
            "hamiltonian": {"builtin": "h2"},
            "ansatz": {"type": "hardware_efficient", "layers": 1},
            "optimizer": {"name": "adam", "learning_rate": 0.1},
            "steps": 80,
        },
    )
    energy = client.result(job_id)["result"]["energy"]
    assert abs(energy - ground_energy(H2)) < 1e-3
    steps = [e for e in events if e.type == "step"]
    assert len(steps) == 80 and all("energy" in e.metrics for e in steps)


def test_classifier_learns_moons_and_predicts(client: QorchClient, tmp_path: Path) -> None:
    spec = {
        "kind": "train",
        "name": "moons",
        "seed": 2,
        "model": {"qubits": 4, "feature_map": "angle", "layers": 3, "reupload": True},
        "data": {"builtin": "moons", "samples": 160, "noise": 0.05},
        "training": {
            "loss": "bce",
            "optimizer": {"name": "adam", "learning_rate": 0.2},
            "epochs": 4,
            "batch_size": 16,
        },
    }
    job_id, events = run(client, spec)
    epochs = [e for e in events if e.type == "epoch"]
    assert [int(e.metrics["epoch"]) for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1].metrics["val_accuracy"] >= 0.9
    assert epochs[-1].metrics["train_loss"] < epochs[0].metrics["train_loss"]

    history = client.metrics(job_id)["data"]
    assert [m["values"] for m in history if m["kind"] == "epoch"] == [
        dict(e.metrics) for e in epochs
    ]
    assert sum(m["kind"] == "step" for m in history) == 4 * 8  # 120 training samples / 16

    answer = client.predict(job_id, [[0.0, 1.0], [1.0, -0.5]])
    assert [p["class"] for p in answer["predictions"]] == ["0", "1"]
    for p in answer["predictions"]:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
    assert client.job(answer["job_id"])["kind"] == "predict"


def test_the_demo_classifier_learns_moons_with_adjoint(client: QorchClient) -> None:
    spec = copy.deepcopy(EXAMPLE_TRAIN)
    spec["training"]["gradient"] = "adjoint"
    job_id, events = run(client, spec)
    epochs = [e for e in events if e.type == "epoch"]
    assert len(epochs) == 4 and epochs[-1].metrics["val_accuracy"] >= 0.95
    steps = client.metrics(job_id)["data"]
    assert sum(m["kind"] == "step" for m in steps) == 4 * 8


def test_same_seed_same_weights_and_resume_after_orchestrator_kill(
    client: QorchClient, stack: Stack
) -> None:
    spec = small_classifier(seed=9, epochs=3, batch_size=3)
    first, _ = run(client, spec)
    reference = client.result(first)["result"]["weights"]

    job = client.submit(spec)
    # Kill the orchestrator (SIGKILL) once the job has taken a few steps, then start it again.
    wait_until(
        lambda: sum(m["kind"] == "step" for m in client.metrics(job["id"])["data"]) >= 2,
        timeout=120,
        what="two training steps",
    )
    orchestrator = stack.service("orchestrator")
    assert orchestrator.proc is not None
    killed_at = time.time()
    orchestrator.proc.kill()
    orchestrator.proc.wait()
    # With the orchestrator dead nothing advances: this is the job as the kill left it, still
    # running with a step in flight and steps to go (else the test would prove nothing).
    total_steps = 3 * 3  # 9 training samples in batches of 3, 3 epochs
    assert client.job(job["id"])["status"] == "RUNNING"
    at_kill = client.checkpoint(job["id"])
    assert at_kill["request"] is not None and at_kill["state"]["step"] < total_steps
    in_flight = at_kill["state"]["step"] + 1  # the metrics row the step in flight will write
    restarted_at = time.time()
    stack.restart("orchestrator")
    events = list(client.watch(job["id"]))
    assert events[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED, events[-1].message
    assert client.result(job["id"])["result"]["weights"] == reference

    # every step reports its wall time, the step that spanned the restart included: its start
    # comes from the checkpoint in Postgres, so it covers the time the orchestrator was down
    steps = [m for m in client.metrics(job["id"])["data"] if m["kind"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, total_steps + 1))
    assert all(m["values"]["step_time_s"] >= 0 for m in steps)
    if at_kill["request"]["kind"] == "gradient":  # else an epoch's evaluation was in flight
        spanning = next(m for m in steps if m["step"] == in_flight)
        assert spanning["values"]["step_time_s"] >= restarted_at - killed_at


# ---------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        (
            {"data": {"features": [[0.1] * 5, [0.2] * 5], "labels": [0, 1]}},
            ["body", "model", "qubits"],
            "5 features",
        ),
        (
            {"training": {"optimizer": {"name": "rmsprop"}}},
            ["body", "training", "optimizer", "name"],
            "adam",
        ),
        ({"data": {"features": [], "labels": []}}, ["body", "data", "features"], "no samples"),
        (
            {"data": {"features": [[0.1, 0.2]] * 5, "labels": [0, 1, 2, 3, 4]}},
            ["body", "data", "labels"],
            "5 classes",
        ),
        (
            {"training": {"loss": "bce"}, "data": {"builtin": "iris"}},
            ["body", "training", "loss"],
            "two classes",
        ),
        (
            {
                "model": {
                    "template": {
                        "source": "OPENQASM 3.0;\ninput float a;\ninput float b;\n"
                        "input float w;\nqubit[2] q;\nry(a) q[0];\nry(b) q[1];\n"
                        "rx(2*w) q[0];\n",
                        "feature_inputs": ["a", "b"],
                        "weight_inputs": ["w"],
                    }
                }
            },
            ["body", "model", "template", "source"],
            "weight 'w' must be the whole angle of exactly one rx/ry/rz gate for parameter_shift",
        ),
        (
            {"pool": "local-dm", "training": {"gradient": "adjoint"}},
            ["body", "training", "gradient"],
            "use parameter_shift",
        ),
        (
            {"shots": 100, "training": {"gradient": "adjoint"}},
            ["body", "training", "gradient"],
            "cannot sample shots",
        ),
    ],
)
def test_bad_training_specs_are_422_naming_the_field(
    client: QorchClient, change: dict[str, Any], loc: list[str], words: str
) -> None:
    spec = small_classifier() | change
    before = client.jobs()["count"]
    with pytest.raises(ApiError) as err:
        client.submit(spec)
    assert err.value.status == 422
    details = err.value.detail
    assert any(d["loc"] == loc and words in d["msg"] for d in details), details
    assert client.jobs()["count"] == before


def test_uploaded_csv_dataset_trains(client: QorchClient) -> None:
    rows = "\n".join(f"{0.1 * i},{1 - 0.1 * i},{'low' if i < 5 else 'high'}" for i in range(10))
    dataset = client.upload_dataset("a,b,kind\n" + rows + "\n", name="line", label_column="kind")
    assert dataset["rows"] == 10 and dataset["classes"] == ["high", "low"]
    spec = small_classifier() | {"data": {"dataset_id": dataset["id"], "validation_fraction": 0.2}}
    job_id, _ = run(client, spec)
    assert client.result(job_id)["result"]["model"]["classes"] == ["high", "low"]

    with pytest.raises(ApiError) as err:
        client.upload_dataset("a,b,kind\n1,2\n", label_column="kind")
    assert err.value.status == 422 and "line 2" in str(err.value.detail)


def test_cli_watches_plots_and_predicts(
    client: QorchClient, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qorch import cli

    job_id, _ = run(client, small_classifier(seed=3, epochs=2, batch_size=4))
    monkeypatch.setenv("QORCH_API_URL", stack.api_url)
    monkeypatch.setenv("QORCH_GRPC_TARGET", stack.grpc_target)
    monkeypatch.setenv("QORCH_API_KEY", stack.admin_key)
    cli.get_settings.cache_clear()
    try:
        assert cli.main(["watch", job_id]) == 0
        png = tmp_path / "curves.png"
        assert cli.main(["metrics", job_id, "--plot", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert cli.main(["predict", job_id, "[[0.0, 1.0]]"]) == 0
    finally:
        cli.get_settings.cache_clear()


def test_two_training_jobs_on_one_pool_take_turns(client: QorchClient) -> None:
    """Each job has one step in flight at a time, so neither waits for the other's whole run."""
    first = client.submit(small_classifier(seed=21, epochs=3, batch_size=3))["id"]
    second = client.submit(small_classifier(seed=22, epochs=3, batch_size=3))["id"]
    for job_id in (first, second):
        assert list(client.watch(job_id))[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED

    def step_times(job_id: str) -> list[datetime]:
        return [e.at.ToDatetime() for e in client.watch(job_id) if e.type == "step"]

    a, b = step_times(first), step_times(second)
    assert len(a) == len(b) == 9
    # the second job stepped before the first one finished, and the other way round
    assert b[0] < a[-1] and a[0] < b[-1]
