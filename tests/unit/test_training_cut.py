"""Training through circuit cutting, in-process: the trainer, the node's encoding and executor,
and qorchestra/training/cut.py, without Kafka or a database. In exact mode a model wider than
its pool must give the same step-by-step losses cut as whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nodes.encoding import expand_bindings
from qorchestra.config import Settings
from qorchestra.cutting.experiments import CutExperiment
from qorchestra.jobs.errors import SpecError
from qorchestra.training import cut, fragments, trainer
from qorchestra.training.spec import MinimizeJob, TrainJob
from tests.unit.test_training import EXECUTOR, run_request

NARROW = Settings(pool_max_qubits={"local-sv": 3})

#: Four qubits joined by one CNOT in the middle: one gate cut (overhead 9) beats a wire cut.
TEMPLATE = """OPENQASM 3.0;
input float w0; input float w1; input float w2; input float w3;
input float w4; input float w5; input float w6; input float w7;
qubit[4] q;
ry(w0) q[0]; ry(w1) q[1]; ry(w2) q[2]; ry(w3) q[3];
cnot q[0], q[1];
cnot q[1], q[2];
cnot q[2], q[3];
rx(w4) q[0]; rx(w5) q[1]; rx(w6) q[2]; rx(w7) q[3];
"""


def run_cut_request(
    setup: trainer.Setup, request: trainer.StepRequest, found: CutExperiment, width: int
) -> np.ndarray:
    """A cut step as the platform runs it: every slice once per subexperiment, then knitted."""
    answers = []
    for part in fragments.slices(request, 16):
        for run in cut.runs(found):
            fragment = fragments.build_fragment(
                setup, request, part, job_id="j", fragment_id="f", pool="local-sv", shots=0
            )
            cut.retarget(fragment, run)
            assert fragment.qubits <= width and fragment.encoding.qubits == setup.model.qubits
            fragment.bindings.extend(expand_bindings(fragment.encoding))
            values = [list(r.expectations.values) for r in EXECUTOR.execute(fragment)]
            answers.append(cut.Answer(run.index, part.offset, values))
    return cut.readouts(found, request, answers)


def losses(job: TrainJob | MinimizeJob, settings: Settings | None, steps: int) -> list[Any]:
    """Metrics of the first ``steps`` advances; cut when ``settings`` make the pool narrow."""
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    found = None
    if settings is not None:
        cut.settle(job, setup, settings)
        found = cut.experiment(job, setup, settings)
        assert found is not None
    state, first = trainer.start(job, setup)
    request: trainer.StepRequest | None = first
    out = []
    for _ in range(steps):
        assert request is not None
        if found is None:
            readouts = run_request(setup, request)
        else:
            readouts = run_cut_request(setup, request, found, 3)
        outcome = trainer.advance(job, setup, state, request, readouts)
        out += outcome.metrics
        state, request = outcome.state, outcome.request
        if request is None:
            break
    return out


def assert_same(cut_metrics: list[Any], whole: list[Any]) -> None:
    assert [m.keys() for m in cut_metrics] == [m.keys() for m in whole]
    for a, b in zip(cut_metrics, whole, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-8), key


def minimize_template(**changes: Any) -> MinimizeJob:
    spec: dict[str, Any] = {
        "kind": "minimize",
        "hamiltonian": {
            "terms": [
                {"coefficient": 1.0, "pauli": "ZZII"},
                {"coefficient": 0.5, "pauli": "IXXI"},
                {"coefficient": -0.7, "pauli": "IIZZ"},
                {"coefficient": 0.3, "pauli": "ZIIZ"},
            ]
        },
        "ansatz": {
            "type": "template",
            "template": {"source": TEMPLATE, "weight_inputs": [f"w{i}" for i in range(8)]},
        },
        "optimizer": {"name": "adam", "learning_rate": 0.1},
        "steps": 3,
        "seed": 5,
    }
    spec.update(changes)
    return MinimizeJob.model_validate(spec)


def test_minimize_through_a_gate_cut_matches_the_uncut_run_step_by_step() -> None:
    job = minimize_template()
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    cut.settle(job, setup, NARROW)
    assert job.cutting is not None and job.cutting.max_subcircuit_qubits == 3  # settled
    plan = (cut.plans(job, setup, NARROW) or {})["model"]
    assert (plan["gate_cuts"], plan["wire_cuts"]) == (1, 0)
    assert [s["width"] for s in plan["subcircuits"]] == [3, 3]

    assert_same(losses(minimize_template(), NARROW, 4), losses(minimize_template(), None, 4))


def test_training_a_classifier_through_wire_cuts_matches_the_uncut_run() -> None:
    spec: dict[str, Any] = {
        "kind": "train",
        "seed": 2,
        "model": {"qubits": 4, "layers": 1},
        "data": {"builtin": "moons", "samples": 6, "validation_fraction": 0.34},
        "training": {"loss": "bce", "epochs": 1, "batch_size": 4},
    }
    cut_metrics = losses(TrainJob.model_validate(spec), NARROW, 3)
    assert "val_loss" in cut_metrics[-1]  # one epoch: its steps and the evaluation
    assert_same(cut_metrics, losses(TrainJob.model_validate(spec), None, 3))


def test_a_model_narrow_enough_is_not_cut_and_a_hopeless_plan_is_refused() -> None:
    job = minimize_template()
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    cut.settle(job, setup, Settings())
    assert job.cutting is None and cut.experiment(job, setup, Settings()) is None

    tight = Settings(pool_max_qubits={"local-sv": 3}, max_cut_overhead=5)
    with pytest.raises(SpecError) as caught:
        cut.settle(minimize_template(), setup, tight)
    (error,) = caught.value.errors
    assert "sampling overhead 9" in error.msg and "at most 5" in error.msg
