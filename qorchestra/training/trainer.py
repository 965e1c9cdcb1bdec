"""The optimisation loop as a pure state machine: no I/O, no clocks, no global randomness.

``start`` gives the initial state and the first :class:`StepRequest`; each time the request's
circuits have been run, ``advance`` turns their readouts into metrics, an optimizer step and the
next request (or the final result). The state is plain JSON: weights, optimizer state, epoch,
batch, step and the sample order. Random streams (initial weights, batch order, SPSA directions)
are derived from ``(seed, purpose, counter)``, so the counters in the state are the whole RNG
state and a run resumed from any checkpoint ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.training import gradients, objectives, optimizers
from qorchestra.training.data import (
    DataError,
    Dataset,
    Scaling,
    builtin,
    fit_scaling,
    from_arrays,
    split,
)
from qorchestra.training.model import (
    CircuitModel,
    classifier,
    hardware_efficient,
    qaoa,
    readout_observables,
    template,
)
from qorchestra.training.spec import MinimizeJob, OptimizerSpec, TrainJob, check_template

State = dict[str, Any]

# Purposes of the derived random streams.
_INIT, _ORDER, _SPSA = 1, 2, 3


def _rng(seed: int, purpose: int, counter: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, counter])


@dataclass(frozen=True)
class StepRequest:
    """Circuits to run: for each sample (none for minimisation), each shifted variant."""

    kind: str  # gradient, evaluate
    samples: tuple[int, ...]
    shifts: tuple[gradients.Shift, ...]
    theta: tuple[float, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    #: "adjoint": the nodes answer each sample with its readout and derivatives (the shifts
    #: are :func:`~qorchestra.training.gradients.adjoint_variants`); "" otherwise.
    gradient: str = ""

    @property
    def circuits(self) -> int:
        """Bindings the request expands to."""
        return max(1, len(self.samples)) * len(self.shifts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (stored with the checkpoint)."""
        value = {
            "kind": self.kind,
            "samples": list(self.samples),
            "shifts": [[list(i), list(d)] for i, d in self.shifts],
            "theta": list(self.theta),
            "extra": self.extra,
        }
        if self.gradient:
            value["gradient"] = self.gradient
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StepRequest:
        """Inverse of :meth:`to_json`."""
        return cls(
            value["kind"],
            tuple(value["samples"]),
            tuple((tuple(i), tuple(d)) for i, d in value["shifts"]),
            tuple(value["theta"]),
            value.get("extra", {}),
            value.get("gradient", ""),
        )


@dataclass(frozen=True)
class Setup:
    """Everything derived from the spec (and the dataset) that the loop needs."""

    model: CircuitModel
    observables: tuple[str, ...]
    data: Dataset | None = None
    train: tuple[int, ...] = ()
    validation: tuple[int, ...] = ()
    scaling: Scaling | None = None
    classes: int = 0
    coefficients: np.ndarray | None = None

    def features(self, samples: tuple[int, ...]) -> list[list[float]]:
        """Raw feature rows of the given samples."""
        assert self.data is not None
        return [self.data.features[i].tolist() for i in samples]


@dataclass
class Advance:
    """What one finished step produced."""

    state: State
    metrics: list[dict[str, float]]
    request: StepRequest | None
    result: dict[str, Any] | None = None


# ---------------------------------------------------------------------------- setup


def resolve_data(job: TrainJob, uploaded: Dataset | None) -> Dataset:
    """The job's samples: built-in, inline, or the uploaded dataset the caller loaded."""
    spec = job.data
    if spec.builtin is not None:
        return builtin(spec.builtin, spec.samples, spec.noise, job.seed)
    if spec.features is not None and spec.labels is not None:
        return from_arrays(spec.features, spec.labels)
    if uploaded is None:
        raise DataError(f"no dataset {spec.dataset_id!r}")
    return uploaded


def build_setup(
    job: TrainJob | MinimizeJob, max_qubits: int, uploaded: Dataset | None = None
) -> Setup:
    """Check the job as a whole and derive its setup; raises SpecError naming the fields."""
    if isinstance(job, TrainJob):
        return _train_setup(job, max_qubits, uploaded)
    return _minimize_setup(job, max_qubits)


def _train_setup(job: TrainJob, max_qubits: int, uploaded: Dataset | None) -> Setup:
    errors: list[FieldError] = []
    try:
        data = resolve_data(job, uploaded)
    except DataError as exc:
        loc = "dataset_id" if job.data.dataset_id else "features"
        raise SpecError([FieldError(("data", loc), str(exc))]) from exc
    width = data.features.shape[1]
    classes = len(data.classes)
    spec = job.model
    if spec.template is not None:
        qubits, problems = check_template(spec.template, width, job.training.gradient)
        errors += [FieldError(("model", "template", *loc), msg) for loc, msg in problems]
        if not spec.template.feature_inputs:
            errors.append(
                FieldError(("model", "template", "feature_inputs"), "name the feature inputs")
            )
        model = template(
            spec.template.source, qubits, spec.template.feature_inputs, spec.template.weight_inputs
        )
    else:
        qubits = spec.qubits
        if width > qubits:
            errors.append(
                FieldError(
                    ("model", "qubits"),
                    f"the data has {width} features; the {spec.feature_map} feature map puts one "
                    f"feature per qubit, so it needs at least {width} qubits (has {qubits})",
                )
            )
        model = classifier(qubits, spec.feature_map, spec.layers, spec.reupload)
    if qubits > max_qubits:
        errors.append(
            FieldError(("model", "qubits"), f"{qubits} qubits; the pool allows {max_qubits}")
        )
    if classes < 2:
        errors.append(FieldError(("data", "labels"), "the labels name a single class"))
    if classes > 2 and classes > qubits:
        errors.append(
            FieldError(
                ("data", "labels"),
                f"{classes} classes; the readout measures one qubit per class and the model has "
                f"{qubits} qubits",
            )
        )
    if classes > 2 and job.training.loss == "bce":
        errors.append(
            FieldError(("training", "loss"), f"bce is for two classes; the data has {classes}")
        )
    if job.training.gradient == "spsa" and job.training.optimizer.name not in (
        "spsa",
        "sgd",
        "adam",
    ):
        errors.append(FieldError(("training", "gradient"), "unsupported combination"))
    train, validation = split(data.rows, job.data.validation_fraction, job.seed)
    if not train:
        errors.append(FieldError(("data",), "no training samples after the validation split"))
    if job.training.early_stopping is not None and not validation:
        errors.append(
            FieldError(
                ("training", "early_stopping"),
                "watches the validation loss, but the validation split is empty: raise "
                "data.validation_fraction",
            )
        )
    if errors:
        raise SpecError(errors)
    scaling = fit_scaling(data.features[list(train)], job.data.scaling)
    return Setup(
        model=model,
        observables=tuple(readout_observables(qubits, classes)),
        data=data,
        train=tuple(train),
        validation=tuple(validation),
        scaling=scaling,
        classes=classes,
    )


def _minimize_setup(job: MinimizeJob, max_qubits: int) -> Setup:
    errors: list[FieldError] = []
    terms = job.hamiltonian.resolved()
    widths = {len(p) for _, p in terms}
    if len(widths) != 1:
        raise SpecError(
            [
                FieldError(
                    ("hamiltonian", "terms"),
                    f"Pauli strings of lengths {sorted(widths)}; all must be equal",
                )
            ]
        )
    qubits = widths.pop()
    if job.ansatz.type == "template":
        assert job.ansatz.template is not None
        t_qubits, problems = check_template(job.ansatz.template, None, job.gradient)
        errors += [FieldError(("ansatz", "template", *loc), msg) for loc, msg in problems]
        if job.ansatz.template.feature_inputs:
            errors.append(
                FieldError(
                    ("ansatz", "template", "feature_inputs"), "minimize jobs have no features"
                )
            )
        if t_qubits and t_qubits != qubits:
            errors.append(
                FieldError(
                    ("ansatz", "template", "source"),
                    f"{t_qubits} qubits; the Hamiltonian acts on {qubits}",
                )
            )
        model = template(job.ansatz.template.source, qubits, [], job.ansatz.template.weight_inputs)
    elif job.ansatz.type == "qaoa":
        if any(set(p) - {"I", "Z"} for _, p in terms):
            errors.append(
                FieldError(("hamiltonian", "terms"), "qaoa needs a diagonal cost: only I and Z")
            )
        model = qaoa(qubits, job.ansatz.layers, terms)
    else:
        model = hardware_efficient(qubits, job.ansatz.layers)
    if qubits > max_qubits:
        errors.append(
            FieldError(("hamiltonian",), f"{qubits} qubits; the pool allows {max_qubits}")
        )
    if job.initial_weights is not None and len(job.initial_weights) != model.weights:
        errors.append(
            FieldError(
                ("initial_weights",),
                f"{len(job.initial_weights)} values; the ansatz has {model.weights} weights",
            )
        )
    if errors:
        raise SpecError(errors)
    return Setup(
        model=model,
        observables=tuple(p for _, p in terms),
        coefficients=np.asarray([c for c, _ in terms], dtype=float),
    )


# ---------------------------------------------------------------------------- the loop


def start(job: TrainJob | MinimizeJob, setup: Setup) -> tuple[State, StepRequest]:
    """Initial weights and the first request."""
    if isinstance(job, MinimizeJob) and job.initial_weights is not None:
        weights = np.asarray(job.initial_weights, dtype=float)
    else:
        weights = _rng(job.seed, _INIT).uniform(-math.pi, math.pi, setup.model.weights) * 0.1
    state: State = {"weights": weights.tolist(), "optimizer": {}, "step": 0, "epoch": 0, "batch": 0}
    if isinstance(job, TrainJob):
        state["order"] = _epoch_order(job, setup, 0)
        state["best_val_loss"] = None
        state["stale_epochs"] = 0
    return state, _gradient_request(job, setup, state)


def _epoch_order(job: TrainJob, setup: Setup, epoch: int) -> list[int]:
    return [int(i) for i in _rng(job.seed, _ORDER, epoch).permutation(list(setup.train))]


def _optimizer(job: TrainJob | MinimizeJob) -> OptimizerSpec:
    return job.training.optimizer if isinstance(job, TrainJob) else job.optimizer


def _gradient_kind(job: TrainJob | MinimizeJob) -> str:
    return job.training.gradient if isinstance(job, TrainJob) else job.gradient


def _batch(job: TrainJob, state: State) -> tuple[int, ...]:
    size = job.training.batch_size
    order: list[int] = state["order"]
    return tuple(order[state["batch"] * size : (state["batch"] + 1) * size])


def _batches(job: TrainJob, setup: Setup) -> int:
    return math.ceil(len(setup.train) / job.training.batch_size)


def _gradient_request(job: TrainJob | MinimizeJob, setup: Setup, state: State) -> StepRequest:
    weights = np.asarray(state["weights"], dtype=float)
    theta = tuple(setup.model.circuit_parameters(weights).tolist())
    samples = _batch(job, state) if isinstance(job, TrainJob) else ()
    if _gradient_kind(job) == "spsa":
        opt = _optimizer(job)
        _, c_k = optimizers.spsa_gains(
            state["step"], opt.a, opt.c, opt.stability, opt.alpha, opt.gamma
        )
        if opt.name != "spsa":
            c_k = opt.c
        delta = _rng(job.seed, _SPSA, state["step"]).choice([-1.0, 1.0], setup.model.weights)
        shifts = gradients.spsa_variants(setup.model.jacobian, delta, c_k)
        return StepRequest(
            "gradient", samples, tuple(shifts), theta, {"delta": delta.tolist(), "c": c_k}
        )
    parameters = len(setup.model.weight_inputs)
    if _gradient_kind(job) == "adjoint":
        shifts = gradients.adjoint_variants(parameters)
        return StepRequest("gradient", samples, tuple(shifts), theta, gradient="adjoint")
    shifts = gradients.parameter_shift_variants(parameters)
    return StepRequest("gradient", samples, tuple(shifts), theta)


def _evaluate_request(setup: Setup, state: State, samples: tuple[int, ...]) -> StepRequest:
    weights = np.asarray(state["weights"], dtype=float)
    theta = tuple(setup.model.circuit_parameters(weights).tolist())
    return StepRequest("evaluate", samples, (gradients.FORWARD,), theta)


def readout_cube(request: StepRequest, readouts: np.ndarray) -> np.ndarray:
    """Readouts (bindings x observables) as (samples, variants, observables)."""
    samples = max(1, len(request.samples))
    return readouts.reshape(samples, len(request.shifts), readouts.shape[-1])


def _loss_of(
    job: TrainJob | MinimizeJob, setup: Setup, request: StepRequest, readout: np.ndarray
) -> tuple[float, objectives.Evaluation | None]:
    """Mean loss of forward readouts (samples x observables) and, for training, the evaluation."""
    if isinstance(job, TrainJob):
        assert setup.data is not None
        labels = setup.data.labels[list(request.samples)]
        ev = objectives.evaluate(
            readout, labels, setup.classes, job.training.loss, job.model.readout_scale
        )
        return ev.loss, ev
    assert setup.coefficients is not None
    return objectives.energy(readout[0], setup.coefficients), None


def advance(
    job: TrainJob | MinimizeJob,
    setup: Setup,
    state: State,
    request: StepRequest,
    readouts: np.ndarray,
) -> Advance:
    """Apply the results of ``request`` (readouts: bindings x observables, binding order)."""
    cube = readout_cube(request, readouts)
    if request.kind == "evaluate":
        return _after_evaluation(job, setup, state, request, cube[:, 0, :])
    state = dict(state)
    weights = np.asarray(state["weights"], dtype=float)
    loss, ev = _loss_of(job, setup, request, cube[:, 0, :])
    if _gradient_kind(job) == "spsa":
        delta = np.asarray(request.extra["delta"])
        plus, _ = _loss_of(job, setup, request, cube[:, 1, :])
        minus, _ = _loss_of(job, setup, request, cube[:, 2, :])
        grad = gradients.spsa_gradient(plus, minus, request.extra["c"], delta)
    else:
        if ev is not None:
            d_readout = ev.d_readout
        else:
            assert setup.coefficients is not None
            d_readout = setup.coefficients[None, :]
        if request.gradient == "adjoint":
            grad_theta = gradients.adjoint_gradient(cube, d_readout)
        else:
            grad_theta = gradients.parameter_shift_gradient(cube, d_readout)
        grad = setup.model.jacobian.T @ grad_theta
    new_weights, state["optimizer"] = _step(job, weights, grad, state)
    state["weights"] = new_weights.tolist()
    state["step"] += 1
    metrics: dict[str, float] = {
        "step": state["step"],
        "loss": loss,
        "grad_norm": float(np.linalg.norm(grad)),
    }
    if isinstance(job, TrainJob):
        assert setup.data is not None and ev is not None
        metrics["batch_accuracy"] = objectives.accuracy(
            ev.probabilities, setup.data.labels[list(request.samples)]
        )
        metrics["epoch"] = state["epoch"] + 1
        metrics["epochs"] = job.training.epochs
    else:
        metrics["energy"] = loss
        metrics["steps"] = job.steps
    state["last_gradient"] = grad.tolist()
    if isinstance(job, TrainJob):
        state["batch"] += 1
        if state["batch"] < _batches(job, setup):
            return Advance(state, [metrics], _gradient_request(job, setup, state))
        return Advance(
            state, [metrics], _evaluate_request(setup, state, setup.train + setup.validation)
        )
    previous = state.get("last_energy")
    state["last_energy"] = loss
    converged = job.tolerance > 0 and previous is not None and abs(previous - loss) < job.tolerance
    if state["step"] >= job.steps or converged:
        return Advance(state, [metrics], _evaluate_request(setup, state, ()))
    return Advance(state, [metrics], _gradient_request(job, setup, state))


def _step(
    job: TrainJob | MinimizeJob, w: np.ndarray, g: np.ndarray, state: State
) -> tuple[np.ndarray, State]:
    opt = _optimizer(job)
    if opt.name == "adam":
        return optimizers.adam(
            w, g, state["optimizer"], opt.learning_rate, opt.beta1, opt.beta2, opt.epsilon
        )
    if opt.name == "sgd":
        return optimizers.sgd(w, g, state["optimizer"], opt.learning_rate, opt.momentum)
    a_k, _ = optimizers.spsa_gains(state["step"], opt.a, opt.c, opt.stability, opt.alpha, opt.gamma)
    return optimizers.spsa_step(w, g, state["optimizer"], a_k)


def _after_evaluation(
    job: TrainJob | MinimizeJob,
    setup: Setup,
    state: State,
    request: StepRequest,
    forward: np.ndarray,
) -> Advance:
    state = dict(state)
    if isinstance(job, MinimizeJob):
        assert setup.coefficients is not None
        energy = objectives.energy(forward[0], setup.coefficients)
        result = {
            "energy": energy,
            "weights": state["weights"],
            "circuit_parameters": list(request.theta),
            "steps": state["step"],
            "ansatz": setup.model.source,
            "observables": list(setup.observables),
            "coefficients": setup.coefficients.tolist(),
        }
        return Advance(state, [{"step": state["step"], "final_energy": energy}], None, result)
    assert setup.data is not None
    n_train = len(setup.train)
    metrics: dict[str, float] = {"epoch": state["epoch"] + 1, "step": state["step"]}
    for name, rows, samples in (
        ("train", forward[:n_train], setup.train),
        ("val", forward[n_train:], setup.validation),
    ):
        if not samples:
            continue
        labels = setup.data.labels[list(samples)]
        ev = objectives.evaluate(
            rows, labels, setup.classes, job.training.loss, job.model.readout_scale
        )
        metrics[f"{name}_loss"] = ev.loss
        metrics[f"{name}_accuracy"] = objectives.accuracy(ev.probabilities, labels)
    state["epoch"] += 1
    stop = state["epoch"] >= job.training.epochs
    early = job.training.early_stopping
    if early is not None and "val_loss" in metrics:
        best = state.get("best_val_loss")
        if best is None or metrics["val_loss"] < best - early.min_delta:
            state["best_val_loss"], state["stale_epochs"] = metrics["val_loss"], 0
        else:
            state["stale_epochs"] += 1
            if state["stale_epochs"] >= early.patience:
                stop, state["stopped_early"] = True, True
                state["stop_reason"] = (
                    f"val_loss has not improved on its best {best:.4g} by more than min_delta "
                    f"{early.min_delta:g} for {state['stale_epochs']} epoch(s) (patience "
                    f"{early.patience}); stopped after epoch {state['epoch']} of "
                    f"{job.training.epochs}"
                )
    if stop:
        return Advance(state, [metrics], None, _model_result(job, setup, state, metrics))
    state["batch"] = 0
    state["order"] = _epoch_order(job, setup, state["epoch"])
    return Advance(state, [metrics], _gradient_request(job, setup, state))


def _model_result(
    job: TrainJob, setup: Setup, state: State, metrics: dict[str, float]
) -> dict[str, Any]:
    """The trained model: everything prediction needs, plus the final metrics."""
    assert setup.data is not None and setup.scaling is not None
    weights = np.asarray(state["weights"], dtype=float)
    return {
        "model": {
            "source": setup.model.source,
            "qubits": setup.model.qubits,
            "feature_map": setup.model.feature_map,
            "feature_inputs": list(setup.model.feature_inputs),
            "weight_inputs": list(setup.model.weight_inputs),
            "observables": list(setup.observables),
            "classes": list(setup.data.classes),
            "feature_names": list(setup.data.feature_names),
            "readout_scale": job.model.readout_scale,
            "scaling": setup.scaling.to_json(),
        },
        "weights": state["weights"],
        "circuit_parameters": setup.model.circuit_parameters(weights).tolist(),
        "epochs": state["epoch"],
        "steps": state["step"],
        "stopped_early": bool(state.get("stopped_early", False)),
        "stop_reason": state.get("stop_reason"),
        "metrics": metrics,
    }


def predictions(model: dict[str, Any], readouts: np.ndarray) -> list[dict[str, Any]]:
    """Class and probabilities per sample from forward readouts of a stored model."""
    classes = model["classes"]
    probs = objectives.probabilities(readouts, len(classes), model["readout_scale"])
    return [
        {
            "class": classes[int(row.argmax())],
            "probabilities": dict(zip(classes, row.tolist(), strict=True)),
        }
        for row in probs
    ]
