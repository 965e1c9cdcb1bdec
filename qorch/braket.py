"""A Braket ``Device`` whose tasks run as qorchestra circuits jobs (docs/braket.md).

    from braket.circuits import Circuit
    from qorch.braket import QorchDevice

    device = QorchDevice(pool="local-sv")  # QORCH_API_URL, QORCH_API_KEY, QORCH_GRPC_TARGET
    task = device.run(Circuit().h(0).cnot(0, 1), shots=1000)
    print(task.result().measurement_counts)

Code written for ``LocalSimulator`` runs unchanged: ``run`` and ``run_batch`` answer with tasks
whose ``result()`` is a ``GateModelQuantumTaskResult`` built by Braket's own
``GateModelQuantumTaskResult.from_object``, as LocalSimulator's are:

- with ``shots=0``, the circuit's result types are computed exactly: ``Expectation`` and
  ``Variance`` of Pauli products from an ``expectation`` job, ``Probability`` from a
  ``probabilities`` job, marginalised to its targets;
- with ``shots > 0``, the circuit, followed by the basis rotations its observables need, runs
  as a ``counts`` job; the counts are expanded to one measurement per shot (in a seeded random
  order) and Braket computes the result types from them, as it does for a QPU's task.

A task's jobs are submitted when the task is made, so a batch runs in parallel on the pool.
This module imports Braket's circuits and result schemas, never its simulators, and nothing of
the server side (a contract in pyproject.toml checks it).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from braket.circuits import Circuit, Observable, ResultType
from braket.circuits.observables import TensorProduct
from braket.circuits.result_types import Expectation, Probability, Variance
from braket.devices import Device
from braket.ir.openqasm import Program as OpenQASMProgram
from braket.task_result import (
    AdditionalMetadata,
    GateModelTaskResult,
    ResultTypeValue,
    TaskMetadata,
)
from braket.tasks import GateModelQuantumTaskResult, QuantumTask, QuantumTaskBatch

from qorch.client import Client, Job, JobStatus
from qorch.programs import to_program

#: Braket's task states for each job status.
STATES = {
    JobStatus.QUEUED: "QUEUED",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.SUCCEEDED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLING: "CANCELLING",
    JobStatus.CANCELLED: "CANCELLED",
}

_QUBITS = re.compile(r"^\s*qubit\[(\d+)\]\s+\w+\s*;", re.MULTILINE)
_PAULIS = frozenset("IXYZ")


class TaskFailed(RuntimeError):
    """A task's job did not succeed; the message has the job's id, status and error."""


@dataclass
class _Plan:
    """One task: the circuit as it runs (no result types), how it is read back."""

    circuit: Circuit
    inputs: dict[str, float]
    shots: int
    result_types: list[ResultType]
    width: int  # qubits of the exported program
    measured: list[int] = field(default_factory=list)  # shots > 0: measuredQubits
    paulis: list[str] = field(default_factory=list)  # shots = 0: the expectation job's
    probabilities: bool = False  # shots = 0: a probabilities job too


class QorchTask(QuantumTask):
    """A task running as qorchestra jobs: ``id`` (its first job's), ``state()``,
    ``result()`` (waits), ``async_result()``, ``cancel()``."""

    def __init__(self, device: QorchDevice, plan: _Plan, jobs: dict[str, Job]) -> None:
        self._device = device
        self._plan = plan
        self._jobs = jobs
        self._result: GateModelQuantumTaskResult | None = None

    @property
    def id(self) -> str:
        return next(iter(self._jobs.values())).id

    @property
    def job_ids(self) -> list[str]:
        """The ids of the qorchestra jobs this task runs as."""
        return [job.id for job in self._jobs.values()]

    def state(self) -> str:
        """``QUEUED``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLING`` or ``CANCELLED``
        (the least advanced of its jobs')."""
        if self._result is not None:
            return "COMPLETED"
        states = [STATES.get(job.refresh().status, "RUNNING") for job in self._jobs.values()]
        for state in ("FAILED", "CANCELLED", "CANCELLING", "QUEUED", "RUNNING"):
            if state in states:
                return state
        return "COMPLETED"

    def cancel(self) -> None:
        """Cancel the task's jobs that are not over."""
        for job in self._jobs.values():
            if not job.refresh().done:
                job.cancel()

    def result(self) -> GateModelQuantumTaskResult:
        """The task's result, once its jobs are over (``TaskFailed`` if one did not succeed)."""
        if self._result is None:
            values = {}
            for kind, job in self._jobs.items():
                job.wait(timeout=self._device.timeout)
                if job.status is not JobStatus.SUCCEEDED:
                    raise TaskFailed(f"job {job.id} is {job.status}: {job.error}")
                values[kind] = job.result().values[0][0]
            self._result = _task_result(self._plan, values, self.id, self._device)
        return self._result

    def async_result(self) -> asyncio.Task:
        """``result()`` in a thread, as an asyncio task of the running loop."""
        loop = asyncio.get_event_loop()
        return loop.create_task(asyncio.to_thread(self.result))

    def metadata(self, use_cached_value: bool = False) -> dict[str, Any]:
        """The task's jobs, as the API shows them."""
        return {kind: job.to_dict() for kind, job in self._jobs.items()}

    def __repr__(self) -> str:
        return f"QorchTask('id':{self.id})"


class QorchTaskBatch(QuantumTaskBatch):
    """Tasks run together: ``tasks`` and ``results()`` in order."""

    def __init__(self, tasks: list[QorchTask]) -> None:
        self.tasks = tasks

    def results(self) -> list[GateModelQuantumTaskResult]:
        return [task.result() for task in self.tasks]


class QorchDevice(Device):
    """Runs Braket circuits (and OpenQASM programs) on a qorchestra pool.

    Args:
        pool: the pool that runs them (``local-sv``, ``local-dm``, ``aws-sv1``, ...).
        client: a ``qorch.client.Client``; None: one from ``QORCH_API_URL``,
            ``QORCH_API_KEY`` and ``QORCH_GRPC_TARGET``, closed with ``close()``.
        timeout: seconds a result waits for its job; None: no limit.
        seed: orders the measurements expanded from counts.
        max_cost_usd: each job's cost cap (paid pools).
    """

    def __init__(
        self,
        pool: str = "local-sv",
        client: Client | None = None,
        *,
        timeout: float | None = 600.0,
        seed: int | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        super().__init__(name=f"qorchestra {pool}", status="ONLINE")
        self.pool = pool
        self.timeout = timeout
        self.max_cost_usd = max_cost_usd
        self._owns_client = client is None
        self.client = client if client is not None else Client()
        self._rng = np.random.default_rng(seed)

    def close(self) -> None:
        """Close the client this device made (not one it was given)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> QorchDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        task_specification: Circuit | OpenQASMProgram,
        shots: int | None = 0,
        inputs: Mapping[str, float] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> QorchTask:
        """Submit one circuit (or OpenQASM program) with ``shots`` (0: exact result types)."""
        plan = _plan(task_specification, shots or 0, inputs or {})
        return QorchTask(self, plan, self._submit(plan))

    def run_batch(
        self,
        task_specifications: Circuit | OpenQASMProgram | Sequence[Circuit | OpenQASMProgram],
        shots: int | Sequence[int] | None = 0,
        max_parallel: int | None = None,
        inputs: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> QorchTaskBatch:
        """Submit every task at once (``max_parallel`` is the pool's business: ignored)."""
        specs = (
            list(task_specifications)
            if isinstance(task_specifications, list | tuple)
            else [task_specifications]
        )
        shot_list = list(shots) if isinstance(shots, Sequence) else [shots or 0] * len(specs)
        if inputs is None or isinstance(inputs, Mapping):
            input_list: list[Mapping[str, float]] = [inputs or {}] * len(specs)
        else:
            input_list = list(inputs)
        if not len(specs) == len(shot_list) == len(input_list):
            raise ValueError("run_batch: as many shots and inputs as task specifications")
        return QorchTaskBatch(
            [self.run(s, n, i) for s, n, i in zip(specs, shot_list, input_list, strict=True)]
        )

    def _submit(self, plan: _Plan) -> dict[str, Job]:
        common: dict[str, Any] = {
            "bindings": [plan.inputs],
            "pool": self.pool,
            "max_cost_usd": self.max_cost_usd,
            "name": "braket task",
        }
        if plan.shots > 0:
            counts = self.client.submit(plan.circuit, result="counts", shots=plan.shots, **common)
            return {"counts": counts}
        jobs: dict[str, Job] = {}
        if plan.paulis:
            jobs["expectation"] = self.client.submit(
                plan.circuit, result="expectation", observables=plan.paulis, shots=0, **common
            )
        if plan.probabilities or not jobs:
            jobs["probabilities"] = self.client.submit(
                plan.circuit, result="probabilities", shots=0, **common
            )
        return jobs

    def expanded(self, counts: Mapping[str, int]) -> np.ndarray:
        """One row of bits per shot, in a random order of the device's generator."""
        rows = [[int(b) for b in bits] for bits, n in counts.items() for _ in range(int(n))]
        measurements = np.array(rows, dtype=int)
        return measurements[self._rng.permutation(len(rows))]


# ---------------------------------------------------------------- planning (pure)


def _plan(spec: Circuit | OpenQASMProgram, shots: int, inputs: Mapping[str, float]) -> _Plan:
    if isinstance(spec, OpenQASMProgram):
        inputs = {**(spec.inputs or {}), **inputs}
        spec = Circuit.from_ir(spec.source)
    if not isinstance(spec, Circuit):
        raise TypeError(f"QorchDevice runs Braket circuits and OpenQASM programs, not {spec!r}")
    if shots < 0:
        raise ValueError("shots must be >= 0")
    result_types = list(spec.result_types)
    if shots == 0 and not result_types:
        raise ValueError("a circuit run with shots=0 needs result types (as on LocalSimulator)")
    circuit = Circuit(spec.instructions)
    if shots > 0 and result_types:
        circuit.add(spec.basis_rotation_instructions)
    parameters = {p.name for p in spec.parameters}
    bindings = {name: float(v) for name, v in inputs.items() if name in parameters}
    missing = parameters - set(bindings)
    if missing:
        raise ValueError(f"no inputs for the circuit's parameters {sorted(missing)}")
    width = _width(circuit)
    plan = _Plan(circuit, bindings, shots, result_types, width)
    if shots > 0:
        measures = [i for i in circuit.instructions if type(i.operator).__name__ == "Measure"]
        plan.measured = (
            [int(q) for i in measures for q in i.target]
            if measures
            else sorted(int(q) for q in circuit.qubits)
        )
        return plan
    for result_type in result_types:
        if isinstance(result_type, Expectation | Variance):
            for targets in _target_sets(result_type, circuit):
                pauli = _pauli(result_type.observable, targets, width)
                if pauli not in plan.paulis and set(pauli) != {"I"}:
                    plan.paulis.append(pauli)
        elif isinstance(result_type, Probability):
            plan.probabilities = True
        else:
            raise ValueError(
                f"QorchDevice computes Expectation, Variance and Probability with shots=0, "
                f"not {type(result_type).__name__}"
            )
    return plan


def _width(circuit: Circuit) -> int:
    """The qubits of the circuit's program, as the platform counts them."""
    source = to_program(circuit).source
    return sum(int(n) for n in _QUBITS.findall(source)) or (max(circuit.qubits, default=0) + 1)


def _target_sets(result_type: Expectation | Variance, circuit: Circuit) -> list[list[int]]:
    """The targets of each value: the result type's, or each qubit's (no targets)."""
    if result_type.target:
        return [[int(q) for q in result_type.target]]
    return [[int(q)] for q in sorted(circuit.qubits)]


def _factors(observable: Observable) -> list[Observable]:
    return list(observable.factors) if isinstance(observable, TensorProduct) else [observable]


def _pauli(observable: Observable, targets: Sequence[int], width: int) -> str:
    """The Pauli string (qubit 0 first) of a Pauli product on ``targets``."""
    letters = ["I"] * width
    factors = _factors(observable)
    names = [type(f).__name__ for f in factors]
    scaled = observable.coefficient != 1  # Braket's result types cannot carry one either
    if scaled or any(name not in _PAULIS for name in names) or len(factors) != len(targets):
        raise ValueError(
            f"QorchDevice computes observables that are products of I, X, Y and Z with "
            f"shots=0, not {observable}"
        )
    for name, qubit in zip(names, targets, strict=True):
        letters[qubit] = name
    return "".join(letters)


# ---------------------------------------------------------------- results (pure)


def _task_result(
    plan: _Plan, values: Mapping[str, Any], task_id: str, device: QorchDevice
) -> GateModelQuantumTaskResult:
    action = OpenQASMProgram(source=to_program(plan.circuit).source, inputs=plan.inputs or None)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # as Braket writes it
    metadata = TaskMetadata(
        id=task_id, shots=plan.shots, deviceId=device.name, createdAt=now, endedAt=now
    )
    document: dict[str, Any] = {
        "taskMetadata": metadata,
        "additionalMetadata": AdditionalMetadata(action=action),
    }
    if plan.shots > 0:
        counts = _projected(values["counts"], plan.measured, plan.width)
        measurements = device.expanded(counts)
        document["measurements"] = measurements.tolist()
        document["measuredQubits"] = plan.measured
        if plan.result_types:
            ir = json.dumps({"results": [rt.to_ir().dict() for rt in plan.result_types]})
            computed = GateModelQuantumTaskResult._calculate_result_types(
                ir, measurements, plan.measured
            )
            document["resultTypes"] = computed
    else:
        document["resultTypes"] = [
            ResultTypeValue.construct(type=rt.to_ir(), value=_exact_value(rt, plan, values))
            for rt in plan.result_types
        ]
    return GateModelQuantumTaskResult.from_object(GateModelTaskResult.construct(**document))


def _projected(counts: Mapping[str, int], measured: Sequence[int], width: int) -> dict[str, int]:
    """``counts`` over the ``measured`` qubits: as they are when they are that wide (the
    program measured them, in that order), else each bitstring's letters of those qubits."""
    out: dict[str, int] = {}
    for bits, n in counts.items():
        key = bits if len(bits) == len(measured) else "".join(bits[q] for q in measured)
        out[key] = out.get(key, 0) + int(n)
    return out


def _exact_value(result_type: ResultType, plan: _Plan, values: Mapping[str, Any]) -> Any:
    if isinstance(result_type, Probability):
        return _marginal(values["probabilities"], result_type, plan.circuit)
    assert isinstance(result_type, Expectation | Variance)
    out = []
    for targets in _target_sets(result_type, plan.circuit):
        pauli = _pauli(result_type.observable, targets, plan.width)
        mean = 1.0 if set(pauli) == {"I"} else values["expectation"][plan.paulis.index(pauli)]
        if isinstance(result_type, Expectation):
            out.append(mean)
        else:
            out.append(1.0 - mean**2)
    return out[0] if result_type.target else out


def _marginal(
    probabilities: Mapping[str, float], result_type: Probability, circuit: Circuit
) -> Any:
    """Braket's probability vector over the targets (without: every qubit the circuit uses, as
    LocalSimulator), target 0 most significant, from the platform's probabilities by bitstring
    (qubit 0 first)."""
    targets = [int(q) for q in result_type.target] or sorted(int(q) for q in circuit.qubits)
    vector = np.zeros(1 << len(targets))
    for bits, p in probabilities.items():
        index = 0
        for q in targets:
            index = (index << 1) | int(bits[q])
        vector[index] += p
    return vector
