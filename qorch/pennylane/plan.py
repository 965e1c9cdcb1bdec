"""A batch of PennyLane tapes as circuits jobs, and the jobs' results as PennyLane results.

Pure: no I/O. :func:`plan_jobs` turns tapes (already preprocessed by the device: supported
operations, one set of parameters each) into :class:`JobPlan` objects, one per shot count (a
batch has one in practice, so one job). :meth:`JobPlan.spec` is the job's programs, result type
and shots; :meth:`JobPlan.results` reads the job's result back into one PennyLane result per tape.

Each tape becomes one or more circuits; circuits of the same structure share a program (every
angle is an input, :mod:`qorch.pennylane.qasm`), so a parameter-shift batch is one program with a
binding per shifted tape, and its bindings fan out over the pool's agents.

How the job measures:

- ``expectation`` (no shots, every measurement an ``expval`` of Pauli words, e.g.
  ``expval(Z(0) @ X(1))`` or of a Hamiltonian): one circuit per tape, the pool computes every
  word's expectation value exactly, and each ``expval`` is its words' linear combination.
- ``probabilities`` (no shots, anything else): each tape's measurements are sorted into groups
  that one basis change measures at once (qubit-wise commuting Pauli words; any other observable
  with its own diagonalizing gates), one circuit per group. ``expval``, ``var`` and ``probs`` are
  read from the exact probabilities through PennyLane's own measurement processes, given the
  amplitudes' moduli as the state (the phases of a diagonalized state change none of them).
- ``counts`` (with shots): the same groups, every qubit measured; the counts become samples (in
  a random order) that PennyLane's measurement processes read, shot vectors included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pennylane as qml
from pennylane.devices.preprocess import decompose
from pennylane.measurements import ExpectationMP, MeasurementProcess
from pennylane.operation import Operator
from pennylane.tape import QuantumScript
from pennylane.wires import Wires

from qorch.pennylane.qasm import Program, decomposition, is_noise, supported, to_program

#: Distinct Pauli words one expectation job asks for, at most (the platform's default bound on
#: observables); a batch with more is measured through probabilities.
MAX_OBSERVABLES = 256

EXPECTATION = "expectation"
PROBABILITIES = "probabilities"
COUNTS = "counts"

#: What a measurement needs of one wire: a Pauli letter (``X``, ``Y``, ``Z``: measured in that
#: letter's eigenbasis) or an observable's own basis, named by the observable's hash.
Token = str | tuple[str, int]

#: A Pauli word: its non-identity letters, by wire.
Word = tuple[tuple[Hashable, str], ...]

_PAULI_CLASSES: Mapping[str, type[Operator]] = {"X": qml.X, "Y": qml.Y, "Z": qml.Z}
_LETTERS = {"PauliX": "X", "PauliY": "Y", "PauliZ": "Z"}


class PlanError(ValueError):
    """The batch cannot be measured by a circuits job (the device's preprocessing prevents it)."""


def pauli_terms(mp: MeasurementProcess) -> list[tuple[float, Word]] | None:
    """An ``expval`` of a real combination of Pauli words as ``[(coefficient, word), ...]``;
    None for any other measurement."""
    if not isinstance(mp, ExpectationMP) or mp.mv is not None or mp.obs is None:
        return None
    rep = mp.obs.pauli_rep
    if rep is None:
        return None
    terms = []
    for word, coefficient in rep.items():
        if np.imag(coefficient) != 0:
            return None
        terms.append((float(np.real(coefficient)), tuple(sorted(word.items(), key=_wire_key))))
    return terms


def _wire_key(item: tuple[Hashable, str]) -> str:
    """Words are compared as sets: sort their letters by a stable rendering of the wire."""
    return repr(item[0])


def word_string(word: Word, wire_order: Sequence[Hashable], width: int) -> str:
    """A word as the platform's observable: one letter per qubit, ``I`` where it has none."""
    letters = ["I"] * width
    index = {w: i for i, w in enumerate(wire_order)}
    for wire, letter in word:
        letters[index[wire]] = letter
    return "".join(letters)


def _letters(obs: Operator) -> dict[Hashable, str] | None:
    """``obs`` as Pauli letters on distinct wires (a product of single-qubit Paulis, possibly
    scaled; identities need nothing), measured letter by letter; None for anything else."""
    if obs.name in _LETTERS:
        return {obs.wires[0]: _LETTERS[obs.name]}
    if obs.name == "Identity":
        return {}
    if isinstance(obs, qml.ops.SProd):
        return _letters(obs.base)
    if isinstance(obs, qml.ops.Prod) and not obs.has_overlapping_wires:
        letters: dict[Hashable, str] = {}
        for factor in obs.operands:
            part = _letters(factor)
            if part is None:
                return None
            letters.update(part)
        return letters
    return None


@dataclass(frozen=True)
class _Part:
    """One thing to measure in one basis: what it needs of each wire, and the observable whose
    own diagonalizing gates give that basis (None: Pauli letters or the computational basis)."""

    needs: Mapping[Hashable, Token]
    block: Operator | None = None


def _needs(mp: MeasurementProcess, wire_order: Wires) -> _Part:
    """What reading ``mp`` (not as Pauli words) needs."""
    obs = mp.obs
    if obs is None:
        return _Part({w: "Z" for w in (mp.wires or wire_order)})
    letters = _letters(obs)
    if letters is not None:
        return _Part(letters)
    if not obs.diagonalizing_gates():
        return _Part({w: "Z" for w in obs.wires})
    return _Part({w: ("basis", obs.hash) for w in obs.wires}, block=obs)


@dataclass
class _Group:
    """Parts measured by one circuit: one token per wire, and the observables whose own
    diagonalizing gates it applies."""

    tokens: dict[Hashable, Token] = field(default_factory=dict)
    blocks: list[Operator] = field(default_factory=list)

    def fits(self, part: _Part) -> bool:
        return all(self.tokens.get(w, t) == t for w, t in part.needs.items())

    def add(self, part: _Part) -> None:
        if part.block is not None and all(w not in self.tokens for w in part.needs):
            self.blocks.append(part.block)
        self.tokens.update(part.needs)

    def gates(self, wire_order: Wires) -> list[Operator]:
        """The basis change: each letter's gates (PennyLane's own), then each observable's."""
        gates: list[Operator] = []
        for wire in wire_order:
            token = self.tokens.get(wire)
            if isinstance(token, str) and token != "Z":
                gates += _PAULI_CLASSES[token](wire).diagonalizing_gates()
        for block in self.blocks:
            gates += block.diagonalizing_gates()
        return gates


def _group(parts: Sequence[_Part]) -> tuple[list[_Group], list[int]]:
    """Greedy grouping: each part joins the first group it fits. The groups, and each part's."""
    groups: list[_Group] = []
    where = []
    for part in parts:
        for i, group in enumerate(groups):
            if group.fits(part):
                group.add(part)
                where.append(i)
                break
        else:
            groups.append(_Group())
            groups[-1].add(part)
            where.append(len(groups) - 1)
    return groups, where


@dataclass
class _Reading:
    """How one measurement is read: as Pauli terms (``terms`` with, per term, the observable
    index or the group that measures it) or as the measurement process itself (in ``group``)."""

    mp: MeasurementProcess
    terms: list[tuple[float, Word]] | None
    places: list[int]  # per term: observable index (expectation) or group index; else [group]


@dataclass
class _TapePlan:
    """One tape: its wire order, its readings, and per group (one for expectation jobs) the
    program and binding that measure it."""

    tape: QuantumScript
    wire_order: Wires
    readings: list[_Reading]
    circuits: list[tuple[int, int]]


@dataclass(frozen=True)
class JobPlan:
    """One circuits job for the tapes ``tape_indices`` of a batch (all with ``shots`` in all)."""

    shots: int
    result_type: str
    observables: tuple[str, ...]
    programs: tuple[tuple[str, tuple[Mapping[str, float], ...]], ...]
    noisy: bool
    width: int
    tape_indices: tuple[int, ...]
    tapes: tuple[_TapePlan, ...]

    @property
    def circuits(self) -> int:
        """Circuit runs (bindings, all programs) of the job."""
        return sum(len(bindings) for _, bindings in self.programs)

    def spec(self) -> dict[str, Any]:
        """The job's ``shots``, ``result`` and ``programs`` (without name or pool)."""
        result: dict[str, Any] = {"type": self.result_type}
        if self.result_type == EXPECTATION:
            result["observables"] = list(self.observables)
        return {
            "shots": self.shots,
            "result": result,
            "programs": [
                {"source": source, "bindings": [dict(b) for b in bindings]}
                for source, bindings in self.programs
            ],
        }

    def results(self, result: Mapping[str, Any], rng: np.random.Generator) -> list[Any]:
        """One PennyLane result per tape (``tape_indices`` order) from the job's ``result``
        (``GET /v1/jobs/{id}/result``'s ``result``). ``rng`` orders the samples of counts."""
        values: dict[int, list[Any]] = {int(p["index"]): p["values"] for p in result["programs"]}
        for index, (_, bindings) in enumerate(self.programs):
            if len(values.get(index, ())) != max(len(bindings), 1):
                raise PlanError(f"the result has no values for every binding of program {index}")
        return [self._read(plan, values, rng) for plan in self.tapes]

    def _read(
        self, plan: _TapePlan, values: Mapping[int, list[Any]], rng: np.random.Generator
    ) -> Any:
        raw = [values[program][binding] for program, binding in plan.circuits]
        k = len(plan.wire_order)
        if self.result_type == EXPECTATION:
            answers = [float(v) for v in raw[0]]
            entry = [
                _combine(r.terms or [], [answers[i] if i >= 0 else 1.0 for i in r.places])
                for r in plan.readings
            ]
            return _shape([entry], plan.tape)
        if self.result_type == PROBABILITIES:
            probs = [_marginal(_probability_vector(r, self.width), self.width, k) for r in raw]
            entry = [_read_probabilities(r, probs, plan.wire_order) for r in plan.readings]
            return _shape([entry], plan.tape)
        samples = [_samples(r, self.shots, k, rng) for r in raw]
        entries = []
        start = 0
        for count in plan.tape.shots:
            span = (start, start + count)
            entries.append(
                [_read_samples(r, samples, plan.wire_order, span) for r in plan.readings]
            )
            start += count
        return _shape(entries, plan.tape)


def _combine(terms: Sequence[tuple[float, Word]], word_values: Sequence[float]) -> np.float64:
    """``sum(c * <word>)`` over the terms, given each word's value."""
    total = 0.0
    for (coefficient, _), value in zip(terms, word_values, strict=True):
        total += coefficient * value
    return np.float64(total)


def _shape(entries: Sequence[Sequence[Any]], tape: QuantumScript) -> Any:
    """PennyLane's result shape: a value per measurement (bare if one), a tuple per shot entry
    when the shots are partitioned."""
    single = len(tape.measurements) == 1
    shaped = [entry[0] if single else tuple(entry) for entry in entries]
    return tuple(shaped) if tape.shots.has_partitioned_shots else shaped[0]


def _probability_vector(value: Mapping[str, float], width: int) -> np.ndarray:
    """The platform's ``{bitstring: probability}`` (zeros left out) as a vector."""
    vector = np.zeros(2**width)
    for bits, p in value.items():
        if len(bits) != width:
            raise PlanError(f"bitstring {bits!r} is not {width} bits wide")
        vector[int(bits, 2)] = float(p)
    return vector


def _marginal(vector: np.ndarray, width: int, kept: int) -> np.ndarray:
    """The distribution of the first ``kept`` qubits (the rest pad a batch to one width)."""
    return vector.reshape(2**kept, 2 ** (width - kept)).sum(axis=1)


def _parity_signs(positions: Sequence[int], qubits: int) -> np.ndarray:
    """(-1)^(sum of the bits at ``positions``) for every basis state (qubit 0 most significant)."""
    states = np.arange(2**qubits)
    parity = np.zeros(2**qubits, dtype=np.int64)
    for position in positions:
        parity ^= (states >> (qubits - 1 - position)) & 1
    return 1.0 - 2.0 * parity


def _read_probabilities(reading: _Reading, probs: Sequence[np.ndarray], wire_order: Wires) -> Any:
    """One measurement from its groups' exact probabilities (already in its basis)."""
    k = len(wire_order)
    if reading.terms is not None:
        word_values = [
            float(probs[g] @ _parity_signs([wire_order.index(w) for w, _ in word], k))
            for (_, word), g in zip(reading.terms, reading.places, strict=True)
        ]
        return _combine(reading.terms, word_values)
    state = np.sqrt(np.clip(probs[reading.places[0]], 0.0, None))  # a -1e-17 is a 0
    return reading.mp.process_state(state, wire_order)


def _samples(
    value: Mapping[str, int], shots: int, kept: int, rng: np.random.Generator
) -> np.ndarray:
    """The platform's ``{bitstring: count}`` as a ``(shots, kept)`` array of bits, in a random
    order (the first ``kept`` qubits; the rest pad a batch to one width)."""
    rows = []
    for bits, count in value.items():
        row = np.array([int(b) for b in bits[:kept]], dtype=np.int64)
        rows.append(np.broadcast_to(row, (int(count), kept)))
    samples = np.concatenate(rows) if rows else np.zeros((0, kept), dtype=np.int64)
    if len(samples) != shots:
        raise PlanError(f"counts add up to {len(samples)} shots, not {shots}")
    return samples[rng.permutation(shots)]


def _read_samples(
    reading: _Reading, samples: Sequence[np.ndarray], wire_order: Wires, span: tuple[int, int]
) -> Any:
    """One measurement from the samples ``span`` of its groups (already in its basis)."""
    if reading.terms is not None:
        word_values = []
        for (_, word), g in zip(reading.terms, reading.places, strict=True):
            bits = samples[g][span[0] : span[1], [wire_order.index(w) for w, _ in word]]
            word_values.append(float(np.mean(1 - 2 * (bits.sum(axis=1) % 2))))
        return _combine(reading.terms, word_values)
    return reading.mp.process_samples(samples[reading.places[0]], wire_order, shot_range=span)


def tape_wires(tape: QuantumScript, device_wires: Wires | None) -> Wires:
    """The wires a tape's results are over: the device's, or else the tape's own."""
    return device_wires if device_wires is not None else tape.wires


def plan_jobs(
    tapes: Sequence[QuantumScript],
    device_wires: Wires | None,
    max_observables: int = MAX_OBSERVABLES,
) -> list[JobPlan]:
    """The jobs that run ``tapes``: one per total shot count (a batch has one in practice)."""
    by_shots: dict[int, list[int]] = defaultdict(list)
    for i, tape in enumerate(tapes):
        by_shots[tape.shots.total_shots or 0].append(i)
    width = max([len(tape_wires(t, device_wires)) for t in tapes] + [1])
    return [
        _plan_job([tapes[i] for i in indices], indices, shots, width, device_wires, max_observables)
        for shots, indices in by_shots.items()
    ]


def _plan_job(
    tapes: Sequence[QuantumScript],
    indices: Sequence[int],
    shots: int,
    width: int,
    device_wires: Wires | None,
    max_observables: int,
) -> JobPlan:
    terms = [[pauli_terms(mp) for mp in tape.measurements] for tape in tapes]
    words = {word for tape_terms in terms for t in tape_terms for _, word in t or [] if word}
    expectation = (
        not shots
        and all(t is not None for tape_terms in terms for t in tape_terms)
        and len(words) <= max_observables
    )
    builder = _Builder(width, measure=bool(shots), dedupe=not shots)
    plans: list[_TapePlan] = []
    observables: dict[str, int] = {}
    for tape, tape_terms in zip(tapes, terms, strict=True):
        wire_order = tape_wires(tape, device_wires)
        if expectation:
            plans.append(
                _expectation_plan(tape, tape_terms, wire_order, width, builder, observables)
            )
        else:
            plans.append(_grouped_plan(tape, tape_terms, wire_order, builder))
    if expectation and not observables:  # only identities: the job still needs an observable
        observables["I" * width] = 0
    return JobPlan(
        shots=shots,
        result_type=EXPECTATION if expectation else PROBABILITIES if not shots else COUNTS,
        observables=tuple(observables),
        programs=builder.programs(),
        noisy=any(is_noise(op) for tape in tapes for op in tape.operations),
        width=width,
        tape_indices=tuple(indices),
        tapes=tuple(plans),
    )


def _expectation_plan(
    tape: QuantumScript,
    tape_terms: Sequence[list[tuple[float, Word]] | None],
    wire_order: Wires,
    width: int,
    builder: _Builder,
    observables: dict[str, int],
) -> _TapePlan:
    """One circuit; every word an observable of the job."""
    readings = []
    for mp, mp_terms in zip(tape.measurements, tape_terms, strict=True):
        places = []
        for _, word in mp_terms or []:
            name = word_string(word, wire_order, width)
            # the identity is 1 without asking: -1 marks it
            places.append(observables.setdefault(name, len(observables)) if word else -1)
        readings.append(_Reading(mp, mp_terms, places))
    return _TapePlan(tape, wire_order, readings, [builder.add(tape.operations, wire_order)])


def _grouped_plan(
    tape: QuantumScript,
    tape_terms: Sequence[list[tuple[float, Word]] | None],
    wire_order: Wires,
    builder: _Builder,
) -> _TapePlan:
    """One circuit per group of parts that one basis change measures."""
    parts: list[_Part] = []
    owners: list[int] = []
    for m, (mp, mp_terms) in enumerate(zip(tape.measurements, tape_terms, strict=True)):
        if mp_terms is not None:
            for _, word in mp_terms:
                parts.append(_Part(dict(word)))
                owners.append(m)
        else:
            parts.append(_needs(mp, wire_order))
            owners.append(m)
    groups, where = _group(parts)
    readings = [_Reading(mp, t, []) for mp, t in zip(tape.measurements, tape_terms, strict=True)]
    for owner, g in zip(owners, where, strict=True):
        readings[owner].places.append(g)
    circuits = [
        builder.add(list(tape.operations) + group.gates(wire_order), wire_order) for group in groups
    ]
    return _TapePlan(tape, wire_order, readings, circuits)


class _Builder:
    """The job's programs: circuits of the same source share one, each its binding."""

    def __init__(self, width: int, measure: bool, dedupe: bool) -> None:
        self._width = width
        self._measure = measure
        self._dedupe = dedupe
        self._index: dict[str, int] = {}
        self._bindings: list[list[tuple[float, ...]]] = []
        self._seen: dict[tuple[int, tuple[float, ...]], int] = {}
        self._sources: list[str] = []

    def add(self, operations: Sequence[Operator], wire_order: Wires) -> tuple[int, int]:
        """The (program, binding) that runs ``operations``."""
        program: Program = to_program(
            _decompose(operations), wire_order, self._width, measure=self._measure
        )
        index = self._index.get(program.source)
        if index is None:
            index = self._index[program.source] = len(self._sources)
            self._sources.append(program.source)
            self._bindings.append([])
        key = (index, program.values)
        if self._dedupe and key in self._seen:
            return index, self._seen[key]
        self._bindings[index].append(program.values)
        self._seen[key] = len(self._bindings[index]) - 1
        return key[0], self._seen[key]

    def programs(self) -> tuple[tuple[str, tuple[Mapping[str, float], ...]], ...]:
        return tuple(
            (
                source,
                tuple(Program(source, values).binding for values in bindings),
            )
            for source, bindings in zip(self._sources, self._bindings, strict=True)
        )


def _decompose(operations: Sequence[Operator]) -> list[Operator]:
    """``operations`` with what a program cannot hold (wide matrices of diagonalizing gates)
    decomposed."""
    if all(supported(op) for op in operations):
        return list(operations)
    (tape,), _ = decompose(
        QuantumScript(list(operations)),
        stopping_condition=supported,
        skip_initial_state_prep=False,
        decomposer=decomposition,
        name="qorchestra.qubit",
    )
    return list(tape.operations)
