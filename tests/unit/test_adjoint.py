"""Adjoint gradients on the node equal parameter shift on Braket's LocalSimulator, to 1e-10.

Both sides run as the agents run them: the step's fragments are built by the orchestrator's
planner, expanded by the node's encoding, and executed by the node's LocalExecutor (parameter
shift: every shifted circuit through Braket's own simulation, one at a time; adjoint: one
forward and one backward pass). The agents' vectorised parameter shift is checked against the
same reference.
The models are random: random weights, every feature map, templates, re-uploading, several
classes, Hamiltonians with an identity term and QAOA's weight-to-angle map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nodes.encoding import expand_bindings
from nodes.executors import adjoint
from nodes.executors.base import ExecutionError
from nodes.executors.local import LocalExecutor
from qorchestra.config import Settings
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.training import MinimizeKind, TrainKind
from qorchestra.training import fragments, gradients, trainer
from qorchestra.training.spec import MinimizeJob, TrainJob
from tests.support.training import BRAKET_EXECUTOR, EXECUTOR, run_request

TEMPLATE = """OPENQASM 3.0;
input float a; input float b;
input float w0; input float w1; input float w2; input float w3; input float w4;
qubit[3] q;
h q[2];
ry(a) q[0]; rx(b) q[1];
ry(w0) q[0]; rx(w1) q[1];
cnot q[0], q[1];
ctrl @ rz(a) q[1], q[2];
rz(w2) q[2];
cz q[1], q[2];
phaseshift(b) q[0];
rx(w3) q[0];
swap q[1], q[2];
ry(w4) q[1];
cnot q[1], q[0];
cnot q[2], q[0];
"""


def train_job(gradient: str, **changes: Any) -> TrainJob:
    spec: dict[str, Any] = {
        "kind": "train",
        "seed": 7,
        "model": {"qubits": 3, "layers": 2},
        "data": {"builtin": "moons", "samples": 12, "validation_fraction": 0.25},
        "training": {"loss": "mse", "epochs": 1, "batch_size": 5, "gradient": gradient},
    }
    spec.update(changes)
    return TrainJob.model_validate(spec)


def minimize_job(gradient: str, **changes: Any) -> MinimizeJob:
    spec: dict[str, Any] = {
        "kind": "minimize",
        "hamiltonian": {"builtin": "h2"},
        "ansatz": {"type": "hardware_efficient", "layers": 2},
        "gradient": gradient,
        "steps": 1,
    }
    spec.update(changes)
    return MinimizeJob.model_validate(spec)


MODELS: dict[str, tuple[Any, dict[str, Any]]] = {
    "angle": (train_job, {}),
    "angle-reupload": (train_job, {"model": {"qubits": 4, "layers": 3, "reupload": True}}),
    "zz": (train_job, {"model": {"qubits": 3, "layers": 2, "feature_map": "zz"}}),
    "zz-reupload": (
        train_job,
        {"model": {"qubits": 2, "layers": 3, "feature_map": "zz", "reupload": True}},
    ),
    "template": (
        train_job,
        {
            "model": {
                "template": {
                    "source": TEMPLATE,
                    "feature_inputs": ["a", "b"],
                    "weight_inputs": ["w0", "w1", "w2", "w3", "w4"],
                }
            }
        },
    ),
    "multi-class": (
        train_job,
        {
            "model": {"qubits": 4, "layers": 2, "reupload": True},
            "data": {"builtin": "iris", "validation_fraction": 0.9},
            "training": {"loss": "cross_entropy", "epochs": 1, "batch_size": 6},
        },
    ),
    "h2": (minimize_job, {}),
    "qaoa": (
        minimize_job,
        {
            "hamiltonian": {
                "terms": [
                    {"coefficient": 1.0, "pauli": "ZZI"},
                    {"coefficient": -0.5, "pauli": "IZZ"},
                    {"coefficient": 0.3, "pauli": "ZII"},
                    {"coefficient": 2.0, "pauli": "III"},
                ]
            },
            "ansatz": {"type": "qaoa", "layers": 2},
        },
    ),
}


def gradient_requests(
    name: str, seed: int
) -> tuple[trainer.Setup, trainer.StepRequest, trainer.StepRequest]:
    """The same step at random weights, as a parameter-shift and as an adjoint request."""
    make, changes = MODELS[name]
    shift_job = make("parameter_shift", **changes)
    if "training" in changes:
        changes = {**changes, "training": {**changes["training"], "gradient": "adjoint"}}
    adjoint_job = make("adjoint", **changes)
    setup = trainer.build_setup(shift_job, 20)
    state, _ = trainer.start(shift_job, setup)
    state["weights"] = np.random.default_rng(seed).uniform(-np.pi, np.pi, setup.model.weights)
    shift = trainer._gradient_request(shift_job, setup, state)
    exact = trainer._gradient_request(adjoint_job, setup, state)
    return setup, shift, exact


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_adjoint_equals_parameter_shift_on_random_models(name: str, seed: int) -> None:
    setup, shift, exact = gradient_requests(name, seed)
    assert exact.gradient == "adjoint" and len(exact.shifts) == 1 + len(setup.model.weight_inputs)
    by_shift = trainer.readout_cube(shift, run_request(setup, shift, executor=BRAKET_EXECUTOR))
    by_adjoint = trainer.readout_cube(exact, run_request(setup, exact, per_fragment=8))
    forward = by_shift[:, 0, :]
    derivative = (by_shift[:, 1::2, :] - by_shift[:, 2::2, :]) / 2.0
    assert np.max(np.abs(by_adjoint[:, 0, :] - forward)) < 1e-10
    assert np.max(np.abs(by_adjoint[:, 1:, :] - derivative)) < 1e-10
    assert np.max(np.abs(derivative)) > 1e-3  # the comparison is not between zeros


@pytest.mark.parametrize("name", ["angle-reupload", "template", "qaoa"])
def test_vectorised_parameter_shift_equals_braket_one_circuit_at_a_time(name: str) -> None:
    setup, shift, _ = gradient_requests(name, 5)
    before = EXECUTOR.vectorized_fragments
    batched = run_request(setup, shift, per_fragment=64)
    assert EXECUTOR.vectorized_fragments > before  # the batch, not Braket gate by gate
    assert np.max(np.abs(batched - run_request(setup, shift, executor=BRAKET_EXECUTOR))) < 1e-12


def test_adjoint_fragments_carry_samples_not_shifts_and_answer_rows_per_parameter() -> None:
    setup, _, exact = gradient_requests("angle", 3)
    parts = list(fragments.slices(exact, 8))  # 8 bindings: 2 samples per fragment
    assert [(p.sample_start, p.sample_stop) for p in parts] == [(0, 2), (2, 4), (4, 5)]
    assert sum(p.bindings for p in parts) == exact.circuits == 5 * (1 + 12)
    fragment = fragments.build_fragment(
        setup, exact, parts[0], job_id="j", fragment_id="f", pool="local-sv", shots=0
    )
    assert adjoint.requested(fragment) and not fragment.encoding.shifts
    fragment.bindings.extend(expand_bindings(fragment.encoding))
    assert len(fragment.bindings) == 2 and adjoint.result_count(fragment) == parts[0].bindings
    answer = LocalExecutor("braket_sv").execute_adjoint(fragment)
    assert len(answer) == parts[0].bindings
    assert all(abs(v) <= 1.0 for r in answer for v in r.expectations.values)


def test_a_resumed_adjoint_run_ends_with_the_same_weights() -> None:
    from tests.support.training import run_job

    job = train_job("adjoint", training={"loss": "bce", "epochs": 2, "batch_size": 3})
    result, _, _ = run_job(job)
    _, state, request = run_job(job, stop_after=3)
    resumed, _, _ = run_job(job, state=state, request=trainer.StepRequest.from_json(request))
    assert result is not None and resumed is not None
    assert resumed["weights"] == result["weights"]
    assert result["metrics"]["train_loss"] < 0.25


def adjoint_fragment(shots: int = 0) -> Any:
    setup, _, exact = gradient_requests("angle", 4)
    part = next(fragments.slices(exact, 64))
    fragment = fragments.build_fragment(
        setup, exact, part, job_id="j", fragment_id="f", pool="local-sv", shots=shots
    )
    fragment.bindings.extend(expand_bindings(fragment.encoding))
    return fragment


@pytest.mark.parametrize(
    ("executor", "shots", "words"),
    [
        (LocalExecutor("braket_dm"), 0, "braket_dm"),
        (LocalExecutor("braket_sv"), 100, "shots 100"),
        (object(), 0, "only local-sv"),
    ],
)
def test_nodes_that_cannot_take_adjoint_fail_the_fragment_for_good(
    executor: Any, shots: int, words: str
) -> None:
    with pytest.raises(ExecutionError, match=words) as err:
        adjoint.execute(executor, adjoint_fragment(shots))
    assert not err.value.retryable and err.value.error_type == "AdjointUnsupported"


def test_a_weight_outside_a_plain_rotation_fails_the_adjoint_fragment_for_good() -> None:
    fragment = adjoint_fragment()
    fragment.program = fragment.program.replace("rz(w1) q[0];", "U(w1, 0, 0) q[0];")
    with pytest.raises(ExecutionError, match="spsa") as err:
        LocalExecutor("braket_sv").execute_adjoint(fragment)
    assert not err.value.retryable


@pytest.mark.parametrize(
    ("kind", "job", "words"),
    [
        (TrainKind(), train_job("adjoint", pool="local-dm"), "density matrices"),
        (TrainKind(), train_job("adjoint", pool="aws-sv1"), "Braket device"),
        (TrainKind(), train_job("adjoint", pool="emu-garnet"), "emulates a QPU"),
        (TrainKind(), train_job("adjoint", shots=100), "cannot sample shots"),
        (
            TrainKind(),
            train_job("adjoint", cutting={"max_subcircuit_qubits": 2}),
            "whole circuit on one agent",
        ),
        (MinimizeKind(), minimize_job("adjoint", pool="local-dm"), "density matrices"),
    ],
)
def test_jobs_that_cannot_take_adjoint_are_refused_naming_the_gradient_to_use(
    kind: Any, job: Any, words: str
) -> None:
    with pytest.raises(SpecError) as err:
        kind.setup(job, Settings(), lambda _: None)
    (problem,) = [e for e in err.value.errors if words in e.msg]
    where = ("training", "gradient") if isinstance(job, TrainJob) else ("gradient",)
    assert problem.loc == where and "parameter_shift" in problem.msg


def test_adjoint_variants_are_rows_not_circuits() -> None:
    rows = gradients.adjoint_variants(3)
    assert rows[0] == gradients.FORWARD and [i for i, _ in rows[1:]] == [(0,), (1,), (2,)]
    readouts = np.zeros((2, 4, 1))
    readouts[:, 1:, 0] = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]
    d_readout = np.asarray([[1.0], [0.5]])
    assert gradients.adjoint_gradient(readouts, d_readout).tolist() == [1.25, 1.5, 1.75]
