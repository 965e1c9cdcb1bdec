"""A fragment's runs as program-set executables: measured, without result types. Pure.

Programs in a Braket program set carry no result types (``#pragma braket result ...``): every
executable is sampled, and its measurements come back. So each run of
:func:`nodes.program.prepare` becomes a source that measures what the result type would have
computed, and :meth:`SampledRun.result` computes it from the measurements:

- counts: the program as it is;
- probabilities: the program, then every qubit measured in order;
- expectations: the program, a change of basis on every qubit the run's observables act on
  (``h`` for X; ``si`` then ``h`` for Y), then every qubit measured. An observable's value is
  the mean, over the shots, of the product of +1 (bit 0) or -1 (bit 1) over its qubits. The
  observables of one run act the same way on every qubit they share, so one basis serves all.

Qubit ``i`` is the program's ``i``-th qubit (:func:`nodes.program.qubit_names`), bitstrings put
qubit 0 leftmost, as everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nodes.program import PreparedProgram, parse_program, qubit_names, qubit_registers
from proto.qorch.v1 import fragments_pb2 as pb

#: The bit register the measurements are written to; a program that names it runs as single
#: tasks.
MEASURED_BITS = "qorch_measured"

_MEASURE = re.compile(r"\bmeasure\b")

#: Gates that turn each Pauli's eigenbasis into the computational basis.
_BASIS_CHANGE = {"X": ("h",), "Y": ("si", "h"), "Z": ()}


@dataclass(frozen=True)
class Outcome:
    """What one executable measured.

    ``counts``: shots per bitstring, one character per measured qubit in the order of
    ``measured_qubits`` (None: qubits 0, 1, ... in order). ``probabilities``: the device's
    probability per bitstring, where it reports those; they are then used instead of the
    counts.
    """

    counts: Mapping[str, int]
    measured_qubits: tuple[int, ...] | None = None
    probabilities: Mapping[str, float] | None = None

    def distribution(self, qubits: int) -> dict[str, float]:
        """Probability per bitstring of qubits ``0 .. qubits - 1``, qubit 0 leftmost."""
        weights: Mapping[str, float] = (
            self.probabilities if self.probabilities is not None else self.counts
        )
        total = float(sum(weights.values()))
        if total <= 0.0:
            raise ValueError("the executable measured nothing")
        width = len(next(iter(weights)))
        columns = self._columns(qubits, width)
        distribution: dict[str, float] = {}
        for bits, weight in weights.items():
            key = "".join(bits[c] for c in columns)
            distribution[key] = distribution.get(key, 0.0) + weight / total
        return distribution

    def _columns(self, qubits: int, width: int) -> list[int]:
        """The bitstring position of each qubit ``0 .. qubits - 1``."""
        measured = self.measured_qubits
        if measured is not None and set(range(qubits)) <= set(measured):
            return [measured.index(q) for q in range(qubits)]
        if width == qubits:
            return list(range(qubits))
        raise ValueError(
            f"expected {qubits} measured qubits, got {width} (measured qubits {measured})"
        )


@dataclass(frozen=True)
class SampledResult:
    """What :class:`nodes.program.TaskResult` reads, computed from measurements."""

    values: tuple[object, ...]
    measurement_counts: Mapping[str, int] | None


@dataclass(frozen=True)
class SampledRun:
    """One run of a fragment as a program-set program, and how to read its executables.

    ``qubits``: how many qubits the source measures, in order (0 for counts: the program
    measures what it measures). ``paulis``: one Pauli string per result type of the matching
    :class:`nodes.program.ProgramRun` (expectations only).
    """

    source: str
    kind: int
    qubits: int = 0
    paulis: tuple[str, ...] = ()

    def result(self, outcome: Outcome) -> SampledResult:
        """The run's result types computed from one executable's measurements."""
        if self.kind == pb.RESULT_KIND_COUNTS:
            return SampledResult(values=(), measurement_counts=dict(outcome.counts))
        distribution = outcome.distribution(self.qubits)
        if self.kind == pb.RESULT_KIND_PROBABILITIES:
            probabilities = [0.0] * (1 << self.qubits)
            for bits, p in distribution.items():
                probabilities[int(bits, 2) if bits else 0] += p
            return SampledResult(values=(probabilities,), measurement_counts=None)
        return SampledResult(
            values=tuple(expectation(p, distribution) for p in self.paulis),
            measurement_counts=None,
        )


def expectation(pauli: str, distribution: Mapping[str, float]) -> float:
    """The mean of the product of +1 (bit 0) / -1 (bit 1) over the qubits ``pauli`` acts on,
    for bitstrings measured in the Pauli's eigenbasis."""
    support = [i for i, c in enumerate(pauli) if c != "I"]
    total = 0.0
    for bits, p in distribution.items():
        ones = sum(1 for i in support if bits[i] == "1")
        total += -p if ones % 2 else p
    return total


def sampled_runs(fragment: pb.Fragment, prepared: PreparedProgram) -> tuple[SampledRun, ...] | None:
    """``prepared.runs`` as program-set programs, in the same order; None where the fragment
    cannot run in a program set: exact runs (``shots = 0``), or, for probabilities and
    expectations, a program that measures by itself, names :data:`MEASURED_BITS`, or whose
    qubits are unknown."""
    if fragment.shots == 0 or not prepared.runs:
        return None
    if prepared.kind == pb.RESULT_KIND_COUNTS:
        return (SampledRun(source=prepared.runs[0].source, kind=prepared.kind),)
    program = fragment.program
    if _MEASURE.search(program) or MEASURED_BITS in program:
        return None
    names = qubit_names(qubit_registers(parse_program(program)), fragment.qubits)
    base = program if program.endswith("\n") else program + "\n"
    if prepared.kind == pb.RESULT_KIND_PROBABILITIES:
        if not names:
            return None
        return (SampledRun(base + measure_all(names), prepared.kind, qubits=len(names)),)
    paulis = [o.strip().upper() for o in fragment.observables]
    runs = []
    for run in prepared.runs:
        run_paulis = tuple(paulis[indices[0]] for indices in run.observables)
        width = len(names) or max(len(p) for p in run_paulis)
        run_names = names or [f"${i}" for i in range(width)]
        rotations = basis_change(run_paulis, run_names)
        if rotations is None:
            return None
        source = base + rotations + measure_all(run_names)
        runs.append(SampledRun(source, prepared.kind, qubits=width, paulis=run_paulis))
    return tuple(runs)


def basis_change(paulis: Sequence[str], names: Sequence[str]) -> str | None:
    """OpenQASM gates that rotate every qubit into the eigenbasis ``paulis`` measure it in;
    None when two of them act differently on one qubit."""
    letters: dict[int, str] = {}
    for pauli in paulis:
        for i, c in enumerate(pauli):
            if c == "I":
                continue
            if letters.setdefault(i, c) != c:
                return None
    return "".join(
        f"{gate} {names[i]};\n" for i in sorted(letters) for gate in _BASIS_CHANGE[letters[i]]
    )


def measure_all(names: Sequence[str]) -> str:
    """Measure every qubit of ``names`` into :data:`MEASURED_BITS`, in order."""
    lines = [f"bit[{len(names)}] {MEASURED_BITS};\n"]
    lines += [f"{MEASURED_BITS}[{k}] = measure {name};\n" for k, name in enumerate(names)]
    return "".join(lines)
