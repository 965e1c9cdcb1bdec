"""Qiskit's V2 primitives on qorchestra: ``Sampler`` (``BaseSamplerV2``) and ``Estimator``
(``BaseEstimatorV2``), each running a call's PUBs as one circuits job (docs/qiskit.md).

    from qorch.qiskit import Estimator, Sampler

    sampler = Sampler(pool="local-sv")  # QORCH_API_URL, QORCH_API_KEY, QORCH_GRPC_TARGET
    result = sampler.run([(circuit, parameter_values)], shots=1000).result()
    result[0].data.meas.get_counts()

A job holds one program per PUB (its circuit, without its final measurements, widened with
idle qubits to the widest circuit of the call) and one binding per parameter set of the PUB's
parameter values (C order). Results come back as Qiskit's reference primitives
(``StatevectorSampler``, ``StatevectorEstimator``) give them: ``PrimitiveResult`` of
``SamplerPubResult`` / ``PubResult``, with ``DataBin`` fields of the PUB's broadcast shape.

- ``Sampler``: a ``counts`` job with the PUBs' shots. The counts of each binding are expanded
  to one outcome per shot in a seeded random order, and each classical register gets the bits
  of the qubits finally measured into it (clbit 0 the least significant, as in Qiskit); a bit
  nothing is measured into reads 0. PUBs with different shots make one job per shots value.
- ``Estimator``: an ``expectation`` job of every Pauli term of the call's observables (Pauli
  strings, ``SparsePauliOp``, ``Pauli``, arrays of them), summed with their coefficients.
  Precision 0 (the default) is exact (shots 0); a precision ``p > 0`` samples with
  ``ceil(1 / p**2)`` shots, and ``stds`` estimates each value's standard error.

The module imports the SDK and Qiskit, nothing of the server side and not Braket (a contract
in pyproject.toml checks it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    BitArray,
    DataBin,
    PrimitiveJob,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.sampler_pub import SamplerPub, SamplerPubLike

from qorch.client import Client, JobStatus
from qorch.programs import to_program

#: Instructions a circuit's program leaves out: they change no result.
_DROPPED = frozenset({"barrier", "delay"})


class PrimitiveJobFailed(RuntimeError):
    """The platform's job did not succeed; the message has its id, status and error."""


@dataclass
class _Prepared:
    """A PUB as a program: its circuit without final measurements and its bindings."""

    circuit: QuantumCircuit
    bindings: list[dict[Any, float]]
    measured: dict[str, list[int | None]] = field(default_factory=dict)  # creg -> qubit/bit


class _Platform:
    """What both primitives share: the client, the pool, running jobs to their end."""

    def __init__(
        self, client: Client | None, pool: str, timeout: float | None, max_cost_usd: float | None
    ) -> None:
        self.client = client if client is not None else Client()
        self.owns_client = client is None
        self.pool = pool
        self.timeout = timeout
        self.max_cost_usd = max_cost_usd

    def values(
        self,
        prepared: Sequence[_Prepared],
        width: int,
        *,
        result: str,
        shots: int,
        observables: Sequence[str] = (),
    ) -> tuple[str, list[list[Any]]]:
        """One job of the ``prepared`` programs, widened to ``width`` qubits (for counts, each
        measured, in order, so that every counts key has one bit per qubit, qubit 0 first):
        its id and its values per program and binding."""
        programs = []
        for item in prepared:
            circuit = _widened(item.circuit, width)
            if result == "counts":
                circuit = circuit.measure_all(inplace=False)
            program = to_program(circuit)
            bindings = [
                {k: v for k, v in program.binding(b).items() if k in program.inputs}
                for b in item.bindings
            ]
            programs.append((program, bindings))
        job = self.client.submit(
            programs,
            result=result,
            shots=shots,
            observables=list(observables),
            pool=self.pool,
            max_cost_usd=self.max_cost_usd,
            name=f"qiskit {result}",
        )
        job.wait(timeout=self.timeout)
        if job.status is not JobStatus.SUCCEEDED:
            raise PrimitiveJobFailed(f"job {job.id} is {job.status}: {job.error}")
        return job.id, job.result().values

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


class Sampler(BaseSamplerV2):
    """``BaseSamplerV2`` on a qorchestra pool.

    Args:
        pool: the pool that runs the circuits.
        client: a ``qorch.client.Client``; None: one from the environment (``close()``
            closes it).
        default_shots: shots of a PUB that gives none and of a run without ``shots``.
        seed: orders the outcomes expanded from counts (an int or a numpy ``Generator``).
        timeout: seconds a job may take; None: no limit.
        max_cost_usd: each job's cost cap (paid pools).
    """

    def __init__(
        self,
        pool: str = "local-sv",
        client: Client | None = None,
        *,
        default_shots: int = 1024,
        seed: np.random.Generator | int | None = None,
        timeout: float | None = 600.0,
        max_cost_usd: float | None = None,
    ) -> None:
        self._platform = _Platform(client, pool, timeout, max_cost_usd)
        self._default_shots = default_shots
        self._seed = seed

    @property
    def default_shots(self) -> int:
        return self._default_shots

    def close(self) -> None:
        self._platform.close()

    def run(
        self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None
    ) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        if any(len(pub.circuit.cregs) == 0 for pub in coerced):
            warnings.warn(
                "One of your circuits has no output classical registers and so the result "
                "will be empty. Did you mean to add measurement instructions?",
                UserWarning,
                stacklevel=2,
            )
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult[SamplerPubResult]:
        rng = np.random.default_rng(self._seed)
        prepared = [_prepare(pub.circuit, pub.parameter_values) for pub in pubs]
        width = max([1, *(p.circuit.num_qubits for p in prepared)])
        values: dict[int, list[Any]] = {}
        job_ids = []
        for shots in sorted({pub.shots for pub in pubs}):
            members = [i for i, pub in enumerate(pubs) if pub.shots == shots]
            job_id, answer = self._platform.values(
                [prepared[i] for i in members], width, result="counts", shots=shots
            )
            job_ids.append(job_id)
            values.update(zip(members, answer, strict=True))
        results = [
            _sampler_result(pub, item, values[i], width, rng)
            for i, (pub, item) in enumerate(zip(pubs, prepared, strict=True))
        ]
        return PrimitiveResult(results, metadata={"version": 2, "job_ids": job_ids})


class Estimator(BaseEstimatorV2):
    """``BaseEstimatorV2`` on a qorchestra pool.

    Args:
        pool: the pool that runs the circuits.
        client: a ``qorch.client.Client``; None: one from the environment (``close()``
            closes it).
        default_precision: the precision of a PUB that gives none and of a run without
            ``precision``; 0: exact (shots 0); ``p > 0``: ``ceil(1 / p**2)`` shots.
        timeout: seconds a job may take; None: no limit.
        max_cost_usd: each job's cost cap (paid pools).
    """

    def __init__(
        self,
        pool: str = "local-sv",
        client: Client | None = None,
        *,
        default_precision: float = 0.0,
        timeout: float | None = 600.0,
        max_cost_usd: float | None = None,
    ) -> None:
        self._platform = _Platform(client, pool, timeout, max_cost_usd)
        self._default_precision = default_precision

    @property
    def default_precision(self) -> float:
        return self._default_precision

    def close(self) -> None:
        self._platform.close()

    def run(
        self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
    ) -> PrimitiveJob[PrimitiveResult[PubResult]]:
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult[PubResult]:
        prepared = [_prepare(pub.circuit, pub.parameter_values) for pub in pubs]
        width = max([1, *(p.circuit.num_qubits for p in prepared)])
        terms = [_terms(pub) for pub in pubs]
        values: dict[int, list[Any]] = {}
        job_ids = []
        paulis_of: dict[int, list[str]] = {}
        for shots in sorted({shots_for(pub.precision) for pub in pubs}):
            members = [i for i, pub in enumerate(pubs) if shots_for(pub.precision) == shots]
            paulis = _platform_paulis([terms[i] for i in members], width)
            if paulis:
                job_id, answer = self._platform.values(
                    [prepared[i] for i in members],
                    width,
                    result="expectation",
                    shots=shots,
                    observables=paulis,
                )
                job_ids.append(job_id)
            else:  # only identities: nothing to run
                answer = [[[] for _ in prepared[i].bindings] for i in members]
            for i, program_values in zip(members, answer, strict=True):
                values[i] = program_values
                paulis_of[i] = paulis
        results = [
            _estimator_result(pub, terms[i], values[i], paulis_of[i], width)
            for i, pub in enumerate(pubs)
        ]
        return PrimitiveResult(results, metadata={"version": 2, "job_ids": job_ids})


def shots_for(precision: float) -> int:
    """The shots of an expectation at ``precision``: 0 (exact) for 0, else ``ceil(1/p²)``."""
    return 0 if precision == 0 else math.ceil(1.0 / precision**2)


# ---------------------------------------------------------------- circuits (pure)


def _prepare(circuit: QuantumCircuit, parameter_values: Any) -> _Prepared:
    """``circuit`` without its final measurements (and barriers), what each register's bits
    measure, and one binding per parameter set (C order)."""
    mapping = _final_measurements(circuit)
    stripped = circuit.remove_final_measurements(inplace=False)
    bare = QuantumCircuit(circuit.num_qubits, global_phase=circuit.global_phase)
    for instruction in stripped.data:
        name = instruction.operation.name
        if name in _DROPPED:
            continue
        if name == "measure" or instruction.clbits:
            raise ValueError(
                "qorch.qiskit runs circuits whose measurements are all final (no mid-circuit "
                "measurements or classical control)"
            )
        qubits = [stripped.find_bit(q).index for q in instruction.qubits]
        bare.append(instruction.operation, qubits)
    measured: dict[str, list[int | None]] = {}
    for register in circuit.cregs:
        measured[register.name] = [mapping.get((register.name, k)) for k in range(register.size)]
    parameters = list(circuit.parameters)
    count = int(np.prod(parameter_values.shape, dtype=int))
    array = np.asarray(parameter_values.as_array(parameters), dtype=float)
    rows = array.reshape(count, len(parameters))
    bindings = [dict(zip(parameters, map(float, row), strict=True)) for row in rows]
    return _Prepared(bare, bindings, measured)


def _final_measurements(circuit: QuantumCircuit) -> dict[tuple[str, int], int]:
    """``(register, bit) -> qubit`` of the measurements nothing acts on after (as Qiskit's
    reference sampler finds them: from the end, until every qubit or clbit is used)."""
    active_qubits = set(range(circuit.num_qubits))
    active_clbits = set(range(circuit.num_clbits))
    mapping: dict[tuple[str, int], int] = {}
    for item in circuit[::-1]:
        if item.operation.name == "measure":
            location = circuit.find_bit(item.clbits[0])
            qubit = circuit.find_bit(item.qubits[0]).index
            if location.index in active_clbits and qubit in active_qubits:
                for register, index in location.registers:
                    mapping[(register.name, index)] = qubit
                active_clbits.remove(location.index)
        elif item.operation.name not in _DROPPED:
            for q in item.qubits:
                active_qubits.discard(circuit.find_bit(q).index)
        if not active_clbits or not active_qubits:
            break
    return mapping


def _widened(circuit: QuantumCircuit, width: int) -> QuantumCircuit:
    """``circuit`` on ``width`` qubits, the extra ones idle."""
    if circuit.num_qubits == width:
        return circuit
    wide = QuantumCircuit(width, global_phase=circuit.global_phase)
    wide.compose(circuit, qubits=range(circuit.num_qubits), inplace=True)
    return wide


# ---------------------------------------------------------------- sampler results (pure)


def _sampler_result(
    pub: SamplerPub,
    prepared: _Prepared,
    counts: Sequence[Mapping[str, int]],
    width: int,
    rng: np.random.Generator,
) -> SamplerPubResult:
    shape = pub.parameter_values.shape
    outcomes = np.zeros((len(counts), pub.shots, width), dtype=bool)
    for j, binding_counts in enumerate(counts):
        outcomes[j] = _expanded(binding_counts, pub.shots, width, rng)
    registers = {}
    for name, qubits in prepared.measured.items():
        bits = np.zeros((len(counts), pub.shots, len(qubits)), dtype=bool)
        for k, qubit in enumerate(qubits):
            if qubit is not None:
                bits[:, :, k] = outcomes[:, :, qubit]
        registers[name] = BitArray.from_bool_array(
            bits.reshape(*shape, pub.shots, len(qubits)), order="little"
        )
    return SamplerPubResult(
        DataBin(**registers, shape=shape),
        metadata={"shots": pub.shots, "circuit_metadata": pub.circuit.metadata},
    )


def _expanded(
    counts: Mapping[str, int], shots: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """One row of bits (qubit 0 first) per shot, in a random order."""
    rows = np.zeros((shots, width), dtype=bool)
    start = 0
    for bits, n in sorted(counts.items()):
        if len(bits) != width:
            raise PrimitiveJobFailed(f"counts key {bits!r} is not {width} bits wide")
        rows[start : start + int(n)] = [c == "1" for c in bits]
        start += int(n)
    if start != shots:
        raise PrimitiveJobFailed(f"counts add up to {start} shots, not {shots}")
    return rows[rng.permutation(shots)]


# ---------------------------------------------------------------- estimator results (pure)


def _terms(pub: EstimatorPub) -> list[dict[str, complex]]:
    """Each observable of the PUB (C order) as ``{Qiskit Pauli label: coefficient}``."""
    observables = pub.observables
    out = []
    for index in np.ndindex(*observables.shape):
        observable = observables[index]
        terms = {str(label): complex(c) for label, c in dict(observable).items()}
        for label in terms:
            if set(label) - set("IXYZ"):
                raise ValueError(f"qorch.qiskit estimates Pauli observables, not {label!r}")
        out.append(terms)
    return out


def _platform_pauli(label: str, width: int) -> str:
    """A Qiskit label (qubit 0 last) as the platform's Pauli string (qubit 0 first)."""
    return label[::-1].ljust(width, "I")


def _platform_paulis(all_terms: Iterable[list[dict[str, complex]]], width: int) -> list[str]:
    paulis: dict[str, None] = {}
    for terms in all_terms:
        for observable in terms:
            for label in observable:
                if set(label) != {"I"}:
                    paulis.setdefault(_platform_pauli(label, width), None)
    return list(paulis)


def _estimator_result(
    pub: EstimatorPub,
    terms: list[dict[str, complex]],
    values: Sequence[Sequence[float]],
    paulis: list[str],
    width: int,
) -> PubResult:
    shape = pub.shape
    shots = shots_for(pub.precision)
    position = {pauli: k for k, pauli in enumerate(paulis)}
    binding_of = np.broadcast_to(
        np.arange(int(np.prod(pub.parameter_values.shape, dtype=int))).reshape(
            pub.parameter_values.shape
        ),
        shape,
    )
    observable_of = np.broadcast_to(
        np.arange(int(np.prod(pub.observables.shape, dtype=int))).reshape(pub.observables.shape),
        shape,
    )
    evs = np.zeros(shape, dtype=float)
    stds = np.zeros(shape, dtype=float)
    for index in np.ndindex(*shape):
        measured = values[int(binding_of[index])]
        total = 0.0
        variance = 0.0
        for label, coefficient in terms[int(observable_of[index])].items():
            if set(label) == {"I"}:
                total += coefficient.real
                continue
            mean = float(measured[position[_platform_pauli(label, width)]])
            total += (coefficient * mean).real
            if shots:
                variance += abs(coefficient) ** 2 * max(0.0, 1.0 - mean**2) / shots
        evs[index] = total
        stds[index] = math.sqrt(variance)
    return PubResult(
        DataBin(evs=evs, stds=stds, shape=shape),
        metadata={
            "target_precision": pub.precision,
            "shots": shots,
            "circuit_metadata": pub.circuit.metadata,
        },
    )
