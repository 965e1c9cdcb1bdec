"""The training kinds: ``train`` (a classifier on a dataset), ``minimize`` (a variational
energy) and ``predict`` (a trained model on new samples, made by the API). Each runs step by
step: ``orchestrator/training_steps.py`` plans a step's fragments and advances the optimizer
when they are in."""

from __future__ import annotations

import numpy as np

from qorchestra.config import Settings
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.kind import DatasetLookup, Location, Prepared
from qorchestra.training import cut as cutting
from qorchestra.training.adjoint import adjoint_problems, gradient_of
from qorchestra.training.data import Dataset, Scaling
from qorchestra.training.model import CircuitModel
from qorchestra.training.spec import MinimizeJob, PredictJob, TrainJob
from qorchestra.training.trainer import Setup, build_setup


def training_tasks(
    job: TrainJob | MinimizeJob, *, weights: int, samples: int, observables: int
) -> int:
    """Quantum tasks of a training or minimisation job run to its last step, at most.

    ``weights`` are the circuit's trainable parameters, ``samples`` the data set's rows (0 for
    a minimisation), ``observables`` the readout's Pauli strings.
    """
    per_sample = {"spsa": 3, "adjoint": 1}.get(gradient_of(job), 1 + 2 * weights)
    if isinstance(job, TrainJob):
        # every epoch: gradients over the training samples, then an evaluation of all of them
        circuits = job.training.epochs * samples * (per_sample + 1)
    else:
        circuits = (job.steps + 1) * per_sample
    return circuits * (max(1, observables) if job.shots > 0 else 1)


def _prepared(job: TrainJob | MinimizeJob, settings: Settings, setup: Setup) -> Prepared:
    samples = len(setup.train) + len(setup.validation) if setup.data is not None else 0
    tasks = training_tasks(
        job,
        weights=len(setup.model.weight_inputs),
        samples=samples,
        observables=len(setup.observables),
    )
    return Prepared(
        result_type="expectation",
        observables=len(setup.observables),
        bindings_total=0,
        tasks=tasks,
        cut_plans=cutting.plans(job, setup, settings),
        setup=setup,
    )


class _OptimisationKind:
    """What train and minimize share: a model built from the spec, cut when it is wider than
    the pool, and an optimizer loop run to its last step."""

    stepwise = True

    def dataset_id(self, job: TrainJob | MinimizeJob) -> str | None:
        """No dataset unless the kind says otherwise."""
        return None

    def setup(
        self, job: TrainJob | MinimizeJob, settings: Settings, datasets: DatasetLookup
    ) -> Setup:
        """Model, data and readout; a model wider than the pool is cut
        (``qorchestra/training/cut.py``) and its plan checked."""
        dataset_id = self.dataset_id(job)
        uploaded = datasets(dataset_id) if dataset_id is not None else None
        setup = build_setup(job, cutting.width_limit(job, settings), uploaded)
        problems = adjoint_problems(job, setup.model.qubits, settings.max_qubits(job.pool))
        if problems:
            raise SpecError(problems)
        cutting.settle(job, setup, settings)
        return setup

    def prepare(
        self, job: TrainJob | MinimizeJob, settings: Settings, datasets: DatasetLookup
    ) -> Prepared:
        """Settle the cut search's budget, build the setup and count its tasks."""
        cutting.settle_budget(job, settings)  # stored with the spec
        return _prepared(job, settings, self.setup(job, settings, datasets))


class TrainKind(_OptimisationKind):
    """A classifier trained on a built-in or uploaded dataset."""

    name = "train"
    spec = TrainJob
    size_field: Location = ("training", "epochs")

    def programs(self, job: TrainJob) -> list[tuple[Location, str]]:
        """The model's template, if it has one."""
        if job.model.template is None:
            return []
        return [(("model", "template", "source"), job.model.template.source)]

    def dataset_id(self, job: TrainJob | MinimizeJob) -> str | None:
        """The uploaded dataset it trains on, if any."""
        return job.data.dataset_id if isinstance(job, TrainJob) else None


class MinimizeKind(_OptimisationKind):
    """The lowest energy of a Hamiltonian over an ansatz (VQE)."""

    name = "minimize"
    spec = MinimizeJob
    size_field: Location = ("steps",)

    def programs(self, job: MinimizeJob) -> list[tuple[Location, str]]:
        """The ansatz's template, if it has one."""
        if job.ansatz.template is None:
            return []
        return [(("ansatz", "template", "source"), job.ansatz.template.source)]


class PredictKind:
    """Predictions of a trained model, made by the API (``POST /v1/jobs/{id}/predict``)."""

    name = "predict"
    spec = PredictJob
    stepwise = True
    size_field: Location = ("samples",)

    def programs(self, job: PredictJob) -> list[tuple[Location, str]]:
        """None: the model's program was checked when it was trained."""
        return []

    def dataset_id(self, job: PredictJob) -> str | None:
        """Predictions carry their samples."""
        return None

    def setup(self, job: PredictJob, settings: Settings, datasets: DatasetLookup) -> Setup:
        """The stored model, with the samples as data."""
        model = job.model
        circuit = CircuitModel(
            source=model["source"],
            qubits=model["qubits"],
            feature_map=model["feature_map"],
            weight_inputs=tuple(model["weight_inputs"]),
            jacobian=np.eye(len(model["weight_inputs"])),
            feature_inputs=tuple(model["feature_inputs"]),
        )
        data = Dataset(
            np.asarray(job.samples, dtype=float),
            np.zeros(len(job.samples), dtype=int),
            tuple(model["feature_names"]),
            tuple(model["classes"]),
        )
        return Setup(
            model=circuit,
            observables=tuple(model["observables"]),
            data=data,
            scaling=Scaling.from_json(model["scaling"]),
            classes=len(model["classes"]),
        )

    def prepare(self, job: PredictJob, settings: Settings, datasets: DatasetLookup) -> Prepared:
        """A prediction's samples are evaluated once each, on the model as trained."""
        setup = self.setup(job, settings, datasets)
        return Prepared(
            result_type="expectation",
            observables=len(setup.observables),
            bindings_total=0,
            tasks=len(job.samples) * (max(1, len(setup.observables)) if job.shots > 0 else 1),
            cut_plans=None,
            setup=setup,
        )
