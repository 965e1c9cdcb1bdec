"""Training logic without Kafka or a database: data, encoding, losses, gradients, optimizers,
fragment slicing, and the optimisation loop run in-process on the node's own executor."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from nodes.encoding import EncodingError, expand_bindings
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.jobs.errors import SpecError
from qorchestra.training import data, fragments, gradients, objectives, optimizers, trainer
from qorchestra.training.hamiltonians import H2, ground_energy
from qorchestra.training.spec import MinimizeJob, TrainJob, shift_rule_problems
from tests.support.training import run_job, run_request


def tiny_classifier(**changes: Any) -> TrainJob:
    spec: dict[str, Any] = {
        "kind": "train",
        "seed": 4,
        "model": {"qubits": 2, "layers": 1},
        "data": {"builtin": "circles", "samples": 10, "validation_fraction": 0.2},
        "training": {"loss": "bce", "epochs": 2, "batch_size": 4},
    }
    spec.update(changes)
    return TrainJob.model_validate(spec)


# ---------------------------------------------------------------- data


def test_builtin_sets_are_seeded_and_shaped() -> None:
    first, again = data.moons(20, 0.1, 3), data.moons(20, 0.1, 3)
    assert np.array_equal(first.features, again.features) and first.features.shape == (20, 2)
    assert sorted(set(first.labels.tolist())) == [0, 1]
    iris = data.iris()
    assert iris.rows == 150 and iris.features.shape[1] == 4 and len(iris.classes) == 3


def test_csv_parsing_and_its_errors() -> None:
    parsed = data.parse_csv("a,b,y\n1,2,cat\n3,4,dog\n", "y")
    assert parsed.classes == ("cat", "dog") and parsed.labels.tolist() == [0, 1]
    with pytest.raises(data.DataError, match="line 3"):
        data.parse_csv("a,y\n1,0\nx,1\n", "y")
    with pytest.raises(data.DataError, match="no column"):
        data.parse_csv("a,b\n1,2\n", "y")


def test_split_and_minmax_scaling() -> None:
    train, val = data.split(10, 0.3, seed=1)
    assert len(val) == 3 and sorted(train + val) == list(range(10))
    assert data.split(10, 0.3, seed=1) == (train, val)
    features = np.asarray([[0.0, 5.0], [2.0, 7.0], [1.0, 6.0]])
    scaled = data.fit_scaling(features, "minmax").apply(features)
    assert scaled.min(axis=0) == pytest.approx([0, 0]) and scaled.max(axis=0) == pytest.approx(
        [math.pi] * 2
    )


# ---------------------------------------------------------------- node-side encoding


def test_encoding_expands_samples_times_variants_sample_major() -> None:
    enc = pb.Encoding(
        feature_map="angle",
        qubits=3,
        offset=[1.0, 0.0],
        scale=[2.0, 1.0],
        samples=[pb.Sample(values=[1.5, 0.25]), pb.Sample(values=[2.0, -1.0])],
        weight_inputs=["w0", "w1"],
        weights=[0.1, 0.2],
        shifts=[pb.WeightShift(), pb.WeightShift(index=[1], delta=[0.5])],
    )
    bindings = [dict(b.values) for b in expand_bindings(enc)]
    assert bindings[0] == {"x0": 1.0, "x1": 0.25, "x2": 1.0, "w0": 0.1, "w1": 0.2}
    assert bindings[1]["w1"] == pytest.approx(0.7) and bindings[1]["x0"] == 1.0
    assert bindings[2]["x0"] == 2.0 and bindings[3]["x1"] == -1.0 and len(bindings) == 4

    enc.feature_map = "zz"
    zz = dict(expand_bindings(enc)[0].values)
    assert zz["x0"] == 2.0 and zz["p0"] == pytest.approx(2 * (math.pi - 1.0) * (math.pi - 0.25))

    enc.shifts.append(pb.WeightShift(index=[7], delta=[1.0]))
    with pytest.raises(EncodingError, match="weight 7"):
        expand_bindings(enc)


# ---------------------------------------------------------------- losses and optimizers


@pytest.mark.parametrize(
    ("classes", "loss"), [(2, "bce"), (2, "mse"), (3, "cross_entropy"), (3, "mse")]
)
def test_loss_derivatives_match_finite_differences(classes: int, loss: str) -> None:
    rng = np.random.default_rng(0)
    readout = rng.uniform(-0.9, 0.9, (5, 1 if classes == 2 else classes))
    labels = rng.integers(0, classes, 5)
    ev = objectives.evaluate(readout, labels, classes, loss, scale=2.0)
    h = 1e-6
    for s in range(5):
        for o in range(readout.shape[1]):
            bumped = readout.copy()
            bumped[s, o] += h
            lower = readout.copy()
            lower[s, o] -= h
            up = objectives.evaluate(bumped, labels, classes, loss, 2.0).losses[s]
            down = objectives.evaluate(lower, labels, classes, loss, 2.0).losses[s]
            assert ev.d_readout[s, o] == pytest.approx((up - down) / (2 * h), abs=1e-6)


def test_adam_first_step_is_learning_rate_times_sign() -> None:
    w, state = optimizers.adam(
        np.zeros(3), np.asarray([0.5, -2.0, 1e-3]), {}, 0.1, 0.9, 0.999, 1e-12
    )
    assert w == pytest.approx([-0.1, 0.1, -0.1]) and state["t"] == 1


# ---------------------------------------------------------------- slicing a step into fragments


@pytest.mark.parametrize(
    ("samples", "variants", "per"), [(5, 3, 16), (3, 33, 16), (1, 7, 7), (0, 9, 4)]
)
def test_slices_cover_every_binding_once_in_order(samples: int, variants: int, per: int) -> None:
    request = trainer.StepRequest(
        "gradient", tuple(range(samples)), (gradients.FORWARD,) * variants, ()
    )
    parts = list(fragments.slices(request, per))
    offsets = [p.offset for p in parts]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert sum(p.bindings for p in parts) == request.circuits
    assert all(p.bindings <= max(per, variants if variants < per else per) for p in parts)
    for a, b in itertools.pairwise(parts):
        assert a.offset + a.bindings == b.offset


@pytest.mark.parametrize("gradient", ["", "adjoint"])
@pytest.mark.parametrize(("samples", "variants"), [(16, 49), (5, 3), (40, 9), (0, 25)])
def test_batched_slices_pack_whole_samples_fuller_and_still_cover_every_binding(
    samples: int, variants: int, gradient: str
) -> None:
    request = trainer.StepRequest(
        "gradient", tuple(range(samples)), (gradients.FORWARD,) * variants, (), gradient=gradient
    )
    plain, batched = list(fragments.slices(request, 64)), list(fragments.slices(request, 64, True))
    for parts in (plain, batched):
        assert [p.offset for p in parts] == list(
            itertools.accumulate([0] + [p.bindings for p in parts[:-1]])
        )
        assert sum(p.bindings for p in parts) == request.circuits
        assert all((p.variant_start, p.variant_stop) == (0, variants) for p in parts)
    assert len(batched) <= len(plain)
    cost = fragments.ADJOINT_SAMPLE_COST if gradient else variants
    per_fragment = max(1, 64 * fragments.BATCHED_FRAGMENT_FACTOR // cost)
    assert all(p.sample_stop - p.sample_start <= per_fragment for p in batched)
    assert fragments.batched("local-sv", 0) and not fragments.batched("local-sv", 100)
    assert not fragments.batched("local-dm", 0)


# ---------------------------------------------------------------- the loop, in-process


def loss_at(
    job: TrainJob,
    setup: trainer.Setup,
    weights: np.ndarray,
    samples: tuple[int, ...] | None = None,
) -> float:
    """The loss at ``weights`` over ``samples`` (default: the first batch of the split)."""
    request = trainer.StepRequest(
        "evaluate",
        setup.train[: job.training.batch_size] if samples is None else samples,
        (gradients.FORWARD,),
        tuple(setup.model.circuit_parameters(weights).tolist()),
    )
    assert setup.data is not None
    labels = setup.data.labels[list(request.samples)]
    readout = run_request(setup, request)
    return objectives.evaluate(
        readout, labels, setup.classes, job.training.loss, job.model.readout_scale
    ).loss


@pytest.mark.parametrize("feature_map", ["angle", "zz"])
def test_parameter_shift_gradient_equals_finite_differences(feature_map: str) -> None:
    # mse: bce's clipping near p = 0 or 1 would make finite differences meaningless
    job = tiny_classifier(
        model={"qubits": 2, "layers": 1, "feature_map": feature_map},
        training={"loss": "mse", "epochs": 1, "batch_size": 4},
    )
    setup = trainer.build_setup(job, 20)
    state, request = trainer.start(job, setup)
    state["order"] = list(setup.train)  # the first batch is then setup.train[:batch_size]
    request = trainer._gradient_request(job, setup, state)
    outcome = trainer.advance(job, setup, state, request, run_request(setup, request))
    w0 = np.asarray(state["weights"])
    h = 1e-4
    reference = [
        (loss_at(job, setup, w0 + h * e) - loss_at(job, setup, w0 - h * e)) / (2 * h)
        for e in np.eye(len(w0))
    ]
    assert outcome.state["last_gradient"] == pytest.approx(reference, abs=1e-6)


def test_qaoa_gradient_goes_through_the_jacobian() -> None:
    job = MinimizeJob.model_validate(
        {
            "kind": "minimize",
            "hamiltonian": {
                "terms": [
                    {"coefficient": 1.0, "pauli": "ZZI"},
                    {"coefficient": 0.5, "pauli": "IZZ"},
                ]
            },
            "ansatz": {"type": "qaoa", "layers": 2},
            "optimizer": {"name": "sgd", "learning_rate": 0.01},
            "initial_weights": [0.3, 0.2, 0.5, 0.1],
            "steps": 1,
        }
    )
    setup = trainer.build_setup(job, 20)
    assert setup.model.weights == 4 and len(setup.model.weight_inputs) == 2 * (2 + 3)
    state, request = trainer.start(job, setup)
    outcome = trainer.advance(job, setup, state, request, run_request(setup, request))

    def energy(w: np.ndarray) -> float:
        forward = trainer.StepRequest(
            "evaluate", (), (gradients.FORWARD,), tuple(setup.model.circuit_parameters(w).tolist())
        )
        assert setup.coefficients is not None
        return objectives.energy(run_request(setup, forward)[0], setup.coefficients)

    w0, h = np.asarray(job.initial_weights), 1e-4
    reference = [(energy(w0 + h * e) - energy(w0 - h * e)) / (2 * h) for e in np.eye(4)]
    assert outcome.state["last_gradient"] == pytest.approx(reference, abs=1e-6)


def test_same_seed_same_weights_and_resume_from_a_checkpoint_is_exact() -> None:
    job = tiny_classifier()
    result, _, _ = run_job(job)
    again, _, _ = run_job(job)
    assert result is not None and again is not None and result["weights"] == again["weights"]

    _, state, request = run_job(job, stop_after=3)
    resumed, _, _ = run_job(job, state=state, request=trainer.StepRequest.from_json(request))
    assert resumed is not None and resumed["weights"] == result["weights"]


def test_spsa_makes_progress_on_h2() -> None:
    """SPSA is noisy by design: from about -1.06 it gets most of the way down."""
    job = MinimizeJob.model_validate(
        {
            "kind": "minimize",
            "seed": 1,
            "hamiltonian": {"builtin": "h2"},
            "ansatz": {"layers": 1},
            "optimizer": {"name": "spsa", "a": 0.3, "c": 0.1},
            "gradient": "spsa",
            "steps": 150,
        }
    )
    result, _, _ = run_job(job)
    assert result is not None and result["energy"] < ground_energy(H2) + 0.25


# ---------------------------------------------------------------- validation


def test_setup_refuses_what_does_not_fit() -> None:
    wide = tiny_classifier(data={"features": [[0.1] * 3, [0.2] * 3], "labels": [0, 1]})
    with pytest.raises(SpecError) as err:
        trainer.build_setup(wide, 20)
    assert err.value.errors[0].loc == ("model", "qubits")

    template = tiny_classifier(
        model={
            "template": {
                "source": "OPENQASM 3.0;\ninput float a;\ninput float t;\nqubit[1] q;\n"
                "ry(a) q[0];\nrz(t) q[0];\n",
                "feature_inputs": ["a"],
                "weight_inputs": ["t", "u"],
            }
        }
    )
    with pytest.raises(SpecError) as err:
        trainer.build_setup(template, 20)
    messages = " ".join(e.msg for e in err.value.errors)
    assert (
        "['u'] are not inputs" in messages
        and "1 feature inputs for data with 2 features" in messages
    )


# A two-feature template for two qubits: each weight the whole angle of one rotation.
TEMPLATE = (
    "OPENQASM 3.0;\ninput float a;\ninput float b;\n"
    "input float w0;\ninput float w1;\ninput float w2;\ninput float w3;\nqubit[2] q;\n"
    "ry(a) q[0];\nry(b) q[1];\nry(w0) q[0];\nry(w1) q[1];\ncnot q[0], q[1];\n"
    "ry(w2) q[0];\nrz(w3) q[1];\n"
)


def template_job(
    source: str = TEMPLATE, gradient: str = "parameter_shift", **model: Any
) -> TrainJob:
    return tiny_classifier(
        model={
            "template": {
                "source": source,
                "feature_inputs": ["a", "b"],
                "weight_inputs": ["w0", "w1", "w2", "w3"],
            },
            **model,
        },
        data={"builtin": "moons", "samples": 16, "validation_fraction": 0.25},
        training={
            "loss": "bce",
            "gradient": gradient,
            "optimizer": {"name": "adam", "learning_rate": 0.3},
            "epochs": 3,
            "batch_size": 4,
        },
    )


@pytest.mark.parametrize(
    ("gates", "words"),
    [
        ("rx(2*w1) q[0];", "inside an expression in the rx angle at line 9"),
        ("rx(w1 + a) q[0];", "inside an expression in the rx angle at line 9"),
        ("rx(w1) q[0];\nrz(w1) q[1];", "(found in 2 gates)"),
        ("rx(w1) q;", "rx applied to 2 qubits"),
        ("ctrl @ rx(w1) q[0], q[1];", "under a gate modifier"),
        ("for int i in [0:1] { rx(w1) q[i]; }", "inside a loop"),
        ("U(w1, 0, 0) q[0];", "an angle of gate 'U'"),
    ],
)
def test_parameter_shift_needs_each_weight_as_the_whole_angle_of_one_rotation(
    gates: str, words: str
) -> None:
    source = (
        "OPENQASM 3.0;\ninput float a;\ninput float b;\ninput float w0;\ninput float w1;\n"
        "input float w2;\ninput float w3;\nqubit[2] q;\n"
        + gates
        + "\nry(a) q[0];\nry(b) q[1];\nry(w0) q[0];\nry(w2) q[1];\nrz(w3) q[0];\n"
    )
    with pytest.raises(SpecError) as err:
        trainer.build_setup(template_job(source), 20)
    [error] = err.value.errors
    assert error.loc == ("model", "template", "source")
    assert error.msg.startswith(
        "weight 'w1' must be the whole angle of exactly one rx/ry/rz gate for parameter_shift"
    )
    assert words in error.msg, error.msg
    # SPSA needs no such structure: the same circuit trains with it
    assert trainer.build_setup(template_job(source, gradient="spsa"), 20).model.weights == 4


def test_shift_rule_check_reads_scopes_not_text() -> None:
    source = (
        "OPENQASM 3.0;\ninput float w;\ninput float v;\nqubit[1] q;\n"
        "gate g(w) x { rx(2*w) x; }\n"  # this w is the gate's own parameter
        "rx(w) q[0];\nry(v) q[0];\n"
    )
    assert shift_rule_problems(source, ["w", "v"]) == []
    minimize = MinimizeJob.model_validate(
        {
            "kind": "minimize",
            "hamiltonian": {"terms": [{"coefficient": 1.0, "pauli": "Z"}]},
            "ansatz": {
                "type": "template",
                "template": {
                    "source": "OPENQASM 3.0;\ninput float t;\nqubit[1] q;\nrx(t/2) q[0];\n",
                    "weight_inputs": ["t"],
                },
            },
        }
    )
    with pytest.raises(SpecError) as err:
        trainer.build_setup(minimize, 20)
    assert err.value.errors[0].loc == ("ansatz", "template", "source")


def initial_train_loss(job: TrainJob, setup: trainer.Setup) -> float:
    """The loss over the whole training split at the job's initial weights."""
    state, _ = trainer.start(job, setup)
    return loss_at(job, setup, np.asarray(state["weights"]), setup.train)


def test_a_template_classifier_trains() -> None:
    job = template_job()
    setup = trainer.build_setup(job, 20)
    assert setup.model.feature_map == "direct" and setup.model.weight_inputs == (
        "w0",
        "w1",
        "w2",
        "w3",
    )
    result, _, _ = run_job(job)
    assert result is not None and result["epochs"] == 3
    assert result["metrics"]["train_loss"] < initial_train_loss(job, setup) - 0.05
    assert result["model"]["source"] == TEMPLATE


def petal_subset_of_iris(per_class: int) -> tuple[list[list[float]], list[int]]:
    """``per_class`` seeded rows of each iris species: petal length and width only."""
    iris = data.iris()
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(iris.labels == c), per_class, replace=False) for c in range(3)]
    )
    return iris.features[rows][:, 2:4].tolist(), iris.labels[rows].tolist()


def test_multi_class_softmax_learns_iris_from_inline_data() -> None:
    features, labels = petal_subset_of_iris(12)
    job = TrainJob.model_validate(
        {
            "kind": "train",
            "seed": 3,
            "model": {"qubits": 3, "layers": 2},
            "data": {"features": features, "labels": labels, "validation_fraction": 0.25},
            "training": {
                "loss": "cross_entropy",
                "optimizer": {"name": "adam", "learning_rate": 0.3},
                "epochs": 3,
                "batch_size": 9,
            },
        }
    )
    setup = trainer.build_setup(job, 20)
    # three classes: one softmax logit per class, <Z> on qubits 0, 1, 2
    assert setup.classes == 3 and setup.observables == ("ZII", "IZI", "IIZ")
    result, _, _ = run_job(job)
    assert result is not None
    metrics = result["metrics"]
    # chance is 1/3
    assert metrics["train_accuracy"] >= 0.75 and metrics["val_accuracy"] >= 0.75, metrics
    assert metrics["train_loss"] < initial_train_loss(job, setup)
    readouts = run_request(
        setup, trainer._evaluate_request(setup, {"weights": result["weights"]}, setup.validation)
    )
    answers = trainer.predictions(result["model"], readouts)
    assert setup.data is not None
    truth = [setup.data.classes[setup.data.labels[i]] for i in setup.validation]
    # prediction (argmax of the softmax) agrees with the accuracy training reported
    hits = sum(p["class"] == t for p, t in zip(answers, truth, strict=True))
    assert hits / len(truth) == pytest.approx(metrics["val_accuracy"])
    for p in answers:
        assert len(p["probabilities"]) == 3 and sum(p["probabilities"].values()) == pytest.approx(1)


def test_early_stopping_stops_before_the_epochs_and_says_why() -> None:
    # min_delta larger than any loss change: the second epoch cannot count as an improvement
    early = {"patience": 1, "min_delta": 10.0}
    job = tiny_classifier(
        training={"loss": "bce", "epochs": 6, "batch_size": 4, "early_stopping": early}
    )
    result, state, _ = run_job(job)
    assert result is not None
    assert result["stopped_early"] is True and result["epochs"] == 2 < job.training.epochs
    assert result["steps"] == 2 * 2  # two epochs of 8 training samples in batches of 4
    assert "val_loss has not improved" in result["stop_reason"]
    assert "stopped after epoch 2 of 6" in result["stop_reason"]
    assert state["best_val_loss"] is not None and state["stale_epochs"] == 1

    patient = tiny_classifier(
        training={"loss": "bce", "epochs": 3, "batch_size": 4, "early_stopping": {"patience": 5}}
    )
    result, _, _ = run_job(patient)
    assert result is not None and result["epochs"] == 3 and not result["stopped_early"]
    assert result["stop_reason"] is None

    no_validation = tiny_classifier(
        data={"builtin": "circles", "samples": 10, "validation_fraction": 0},
        training={"early_stopping": early},
    )
    with pytest.raises(SpecError) as err:
        trainer.build_setup(no_validation, 20)
    assert err.value.errors[0].loc == ("training", "early_stopping")


def test_sgd_momentum_accumulates_and_survives_a_checkpoint() -> None:
    g = np.asarray([1.0, -2.0])
    w, state = optimizers.sgd(np.zeros(2), g, {}, 0.1, 0.5)
    w, state = optimizers.sgd(w, g, state, 0.1, 0.5)
    # velocity g, then 0.5 g + g: the second step is 1.5 times the first
    assert w == pytest.approx(-0.1 * g - 0.15 * g) and state["velocity"] == pytest.approx(1.5 * g)

    job = tiny_classifier(
        data={
            "builtin": "moons",
            "samples": 16,
            "validation_fraction": 0.25,
            "scaling": "standard",
        },
        training={
            "loss": "bce",
            "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
            "epochs": 3,
            "batch_size": 4,
        },
    )
    setup = trainer.build_setup(job, 20)
    result, _, _ = run_job(job)
    assert result is not None
    assert result["metrics"]["train_loss"] < 0.6 * initial_train_loss(job, setup)
    _, state, request = run_job(job, stop_after=3)
    assert len(state["optimizer"]["velocity"]) == setup.model.weights
    resumed, _, _ = run_job(job, state=state, request=trainer.StepRequest.from_json(request))
    assert resumed is not None and resumed["weights"] == result["weights"]


def test_standard_scaling_is_fitted_on_the_training_split_and_applied_by_the_node() -> None:
    job = tiny_classifier(
        data={"builtin": "moons", "samples": 12, "validation_fraction": 0.25, "scaling": "standard"}
    )
    setup = trainer.build_setup(job, 20)
    assert setup.data is not None and setup.scaling is not None
    train = setup.data.features[list(setup.train)]
    scaled = setup.scaling.apply(train)
    assert scaled.mean(axis=0) == pytest.approx([0, 0], abs=1e-12)
    assert scaled.std(axis=0) == pytest.approx([1, 1])

    _, request = trainer.start(job, setup)
    part = next(fragments.slices(request, 64))
    fragment = fragments.build_fragment(
        setup, request, part, job_id="j", fragment_id="f", pool="local-sv", shots=0
    )
    bindings = expand_bindings(fragment.encoding)
    variants = len(request.shifts)
    for k, sample in enumerate(request.samples[part.sample_start : part.sample_stop]):
        raw = setup.data.features[sample]
        expected = (raw - train.mean(axis=0)) / train.std(axis=0)
        values = dict(bindings[k * variants].values)
        assert [values["x0"], values["x1"]] == pytest.approx(expected.tolist())
