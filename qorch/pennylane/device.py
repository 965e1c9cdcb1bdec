"""``qorchestra.qubit``: a PennyLane device whose circuits run as qorchestra circuits jobs.

``execute`` turns a batch of tapes into one circuits job (:mod:`qorch.pennylane.plan`): tapes
of the same structure become one OpenQASM 3 program with many bindings, so the shifted tapes of
parameter-shift and the points of a batch fan out over the pool's agents. See docs/pennylane.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.preprocess import decompose, validate_device_wires, validate_observables
from pennylane.exceptions import DeviceError
from pennylane.measurements import (
    ExpectationMP,
    MeasurementProcess,
    ProbabilityMP,
    SampleMeasurement,
    VarianceMP,
)
from pennylane.operation import Operator
from pennylane.ops import Hermitian, SparseHamiltonian
from pennylane.tape import QuantumScript, QuantumScriptBatch, QuantumScriptOrBatch
from pennylane.transforms import broadcast_expand, defer_measurements, dynamic_one_shot
from pennylane.transforms.core import CompilePipeline, transform
from pennylane.typing import PostprocessingFn, Result, ResultBatch

from qorch.pennylane.jobs import Endpoint, JobRunner
from qorch.pennylane.plan import plan_jobs
from qorch.pennylane.qasm import TARGET_GATES, decomposition, supported

#: Pools that run noise channels (density-matrix simulators).
DENSITY_MATRIX_POOLS = frozenset({"local-dm", "aws-dm1"})

#: Ways to run mid-circuit measurements: deferred (extra wires) or one shot at a time.
MCM_METHODS = frozenset({"deferred", "one-shot"})

#: Measurements read from exact probabilities (no shots).
ANALYTIC_MEASUREMENTS = (ExpectationMP, VarianceMP, ProbabilityMP)


class QorchDevice(Device):
    """Runs PennyLane circuits on a qorchestra pool, one circuits job per batch.

    Args:
        wires: the number of wires, or their labels; None: each circuit's own wires.
        shots: shots per circuit (an int, or a shot vector such as ``[100, (10, 3)]``); None:
            exact results. Deprecated on devices by PennyLane in favour of ``qml.set_shots``,
            which this device honours too.
        pool: the pool that runs the circuits (``local-sv``, ``local-dm``, ``aws-sv1``, ...).
        noise_pool: where circuits with noise channels go when ``pool`` is not a
            density-matrix pool.
        url: the API's base URL; None: ``QORCH_API_URL`` (as the ``qorch`` command reads it).
        api_key: the API key; None: ``QORCH_API_KEY``.
        max_cost_usd: the cost cap of each job (for paid pools).
        timeout: seconds one execution (its jobs, submitted and run) may take; None: no limit.
        seed: orders the samples drawn from counts (the counts come from the pool).
    """

    def __init__(
        self,
        wires: Any = None,
        shots: Any = None,
        *,
        pool: str = "local-sv",
        noise_pool: str = "local-dm",
        url: str | None = None,
        api_key: str | None = None,
        max_cost_usd: float | None = None,
        timeout: float | None = 600.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(wires=wires, shots=shots)
        self.pool = pool
        self.noise_pool = noise_pool
        self.max_cost_usd = max_cost_usd
        self.timeout = timeout
        self._runner = JobRunner(Endpoint.resolve(url, api_key))
        self._rng = np.random.default_rng(seed)

    @property
    def name(self) -> str:
        """The name PennyLane loads it by."""
        return "qorchestra.qubit"

    def setup_execution_config(
        self, config: ExecutionConfig | None = None, circuit: QuantumScript | None = None
    ) -> ExecutionConfig:
        """Parameter-shift (never device derivatives), deferred mid-circuit measurements unless
        one-shot is asked for."""
        config = config or ExecutionConfig()
        mcm_method = config.mcm_config.mcm_method or "deferred"
        if mcm_method not in MCM_METHODS:
            raise DeviceError(
                f"mcm_method {mcm_method!r} is not supported by {self.name}; "
                f"use one of {sorted(MCM_METHODS)}"
            )
        if mcm_method == "one-shot" and circuit is not None and not circuit.shots:
            raise DeviceError("mcm_method 'one-shot' needs shots")
        return replace(
            config,
            use_device_gradient=False,
            use_device_jacobian_product=False,
            grad_on_execution=False,
            convert_to_numpy=True,
            mcm_config=replace(config.mcm_config, mcm_method=mcm_method),
        )

    def preprocess_transforms(
        self, execution_config: ExecutionConfig | None = None
    ) -> CompilePipeline:
        """Mid-circuit measurements, wires, batches, gates the pools run, and what they can
        measure."""
        config = execution_config or self.setup_execution_config()
        program = CompilePipeline()
        if config.mcm_config.mcm_method == "one-shot":
            program.add_transform(
                dynamic_one_shot, postselect_mode=config.mcm_config.postselect_mode
            )
        else:
            program.add_transform(defer_measurements, allow_postselect=False)
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(drop_snapshots)
        program.add_transform(dense_observables)
        program.add_transform(broadcast_expand)
        program.add_transform(
            decompose,
            stopping_condition=supported,
            skip_initial_state_prep=False,
            decomposer=decomposition,
            target_gates=set(TARGET_GATES),
            device_wires=self.wires,
            name=self.name,
        )
        program.add_transform(validate_observables, stopping_condition=measurable, name=self.name)
        program.add_transform(validate_measurement_kinds, name=self.name)
        return program

    def execute(
        self, circuits: QuantumScriptOrBatch, execution_config: ExecutionConfig | None = None
    ) -> Result | ResultBatch:
        """Run the batch as circuits jobs (one per shot count: one, in practice)."""
        single = isinstance(circuits, QuantumScript)
        batch: Sequence[QuantumScript] = [circuits] if single else list(circuits)
        plans = plan_jobs(batch, self.wires)
        specs = []
        for plan in plans:
            noisy_elsewhere = plan.noisy and self.pool not in DENSITY_MATRIX_POOLS
            spec: dict[str, Any] = {
                "name": f"pennylane: {plan.circuits} circuit(s)",
                "kind": "circuits",
                "pool": self.noise_pool if noisy_elsewhere else self.pool,
                **plan.spec(),
            }
            if self.max_cost_usd is not None:
                spec["max_cost_usd"] = self.max_cost_usd
            specs.append(spec)
        answers = self._runner.run(specs, self.timeout)
        results: list[Any] = [None] * len(batch)
        for plan, answer in zip(plans, answers, strict=True):
            for index, result in zip(
                plan.tape_indices, plan.results(answer, self._rng), strict=True
            ):
                results[index] = result
        self._track(batch, results, jobs=len(plans))
        return results[0] if single else tuple(results)

    def _track(self, batch: Sequence[QuantumScript], results: Sequence[Any], jobs: int) -> None:
        """Batches, jobs, executions, shots, results and resources for ``qml.Tracker``."""
        if not self.tracker.active:
            return
        self.tracker.update(batches=1, jobs=jobs)
        self.tracker.record()
        for tape, result in zip(batch, results, strict=True):
            info: dict[str, Any] = {"executions": 1, "results": result}
            if tape.shots:
                info["shots"] = tape.shots.total_shots
            info["resources"] = tape.specs["resources"]
            self.tracker.update(**info)
            self.tracker.record()


def measurable(obs: Operator) -> bool:
    """Whether an observable can be measured: a combination of Pauli words, or anything with
    diagonalizing gates."""
    return obs.pauli_rep is not None or obs.has_diagonalizing_gates


@transform
def drop_snapshots(tape: QuantumScript) -> tuple[QuantumScriptBatch, PostprocessingFn]:
    """Snapshots are not taken: the pools return measurements, not states."""
    operations = [op for op in tape.operations if op.name != "Snapshot"]
    if len(operations) == len(tape.operations):
        return (tape,), _first
    return (tape.copy(operations=operations),), _first


@transform
def dense_observables(tape: QuantumScript) -> tuple[QuantumScriptBatch, PostprocessingFn]:
    """A ``SparseHamiltonian`` observable as the ``Hermitian`` of its matrix (which has
    diagonalizing gates)."""
    if not any(isinstance(mp.obs, SparseHamiltonian) for mp in tape.measurements):
        return (tape,), _first
    measurements = [_dense(mp) for mp in tape.measurements]
    return (tape.copy(measurements=measurements),), _first


def _dense(mp: MeasurementProcess) -> MeasurementProcess:
    if not isinstance(mp.obs, SparseHamiltonian):
        return mp
    matrix = mp.obs.sparse_matrix(wire_order=mp.obs.wires).toarray()
    return type(mp)(obs=Hermitian(matrix, wires=mp.obs.wires))


@transform
def validate_measurement_kinds(
    tape: QuantumScript, name: str = "qorchestra.qubit"
) -> tuple[QuantumScriptBatch, PostprocessingFn]:
    """Without shots: ``expval``, ``var`` and ``probs`` (the pools return probabilities, not
    amplitudes). With shots: any sample-based measurement (``sample``, ``counts`` too)."""
    for mp in tape.measurements:
        if tape.shots and not isinstance(mp, SampleMeasurement):
            raise DeviceError(f"Measurement {mp} not accepted with finite shots on {name}")
        if not tape.shots and not isinstance(mp, ANALYTIC_MEASUREMENTS):
            kind = "needs shots" if isinstance(mp, SampleMeasurement) else "needs amplitudes"
            raise DeviceError(
                f"Measurement {mp} is not supported without shots on {name} ({kind}; the "
                "pools return expectation values, probabilities and counts)"
            )
    return (tape,), _first


def _first(results: ResultBatch) -> Result:
    """The one tape's result."""
    return results[0]
