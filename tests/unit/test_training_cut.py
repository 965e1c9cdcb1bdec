"""Training through circuit cutting, in-process: the trainer, the node's encoding and executor,
and qorchestra/training/cut.py, without Kafka or a database. In exact mode a model wider than
its pool must give the same step-by-step losses cut as whole."""

from __future__ import annotations

from typing import Any

import pytest

from qorchestra.config import Settings
from qorchestra.jobs.errors import SpecError
from qorchestra.training import cut, trainer
from qorchestra.training.spec import TrainJob
from tests.support.training import losses, minimize_template

NARROW = Settings(pool_max_qubits={"local-sv": 3})


def assert_same(cut_metrics: list[Any], whole: list[Any]) -> None:
    assert [m.keys() for m in cut_metrics] == [m.keys() for m in whole]
    for a, b in zip(cut_metrics, whole, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-8), key


def test_minimize_through_a_gate_cut_matches_the_uncut_run_step_by_step() -> None:
    job = minimize_template()
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    cut.settle(job, setup, NARROW)
    assert job.cutting is not None and job.cutting.max_subcircuit_qubits == 3  # settled
    plan = (cut.plans(job, setup, NARROW) or {})["model"]
    assert (plan["gate_cuts"], plan["wire_cuts"]) == (1, 0)
    # a cut gate measures in place: the pieces hold the model's 4 qubits and nothing more
    assert sorted(s["width"] for s in plan["subcircuits"]) == [1, 3]

    assert_same(losses(minimize_template(), NARROW, 4), losses(minimize_template(), None, 4))


def test_training_a_classifier_through_two_gate_cuts_matches_the_uncut_run() -> None:
    spec: dict[str, Any] = {
        "kind": "train",
        "seed": 2,
        "model": {"qubits": 4, "layers": 1},
        "data": {"builtin": "moons", "samples": 6, "validation_fraction": 0.34},
        "training": {"loss": "bce", "epochs": 1, "batch_size": 4},
    }
    job = TrainJob.model_validate(spec)
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    cut.settle(job, setup, NARROW)
    plan = (cut.plans(job, setup, NARROW) or {})["model"]
    assert (plan["gate_cuts"], plan["wire_cuts"]) == (2, 0)  # the ring's CNOTs, measured in place
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
