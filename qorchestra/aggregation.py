"""Turning fragment results into a job's result (pure: no I/O).

Aggregation is idempotent by construction: each fragment's values are stored once, keyed by
fragment id, and the job's result is assembled from the stored values in program/binding order,
so a redelivered or duplicated result cannot change it.

Nothing counts unchecked: a result must have the shape its fragment asked for, and values that
a run of it can produce (docs: DESIGN.md, "Trust"). Expectations lie in [-1, 1], counts sum to
the shots, probabilities to 1, and bitstrings have the program's width
(:func:`binding_values`, with what the fragment asked in :class:`Expected`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, overload

from braket.default_simulator.openqasm.interpreter import Interpreter
from braket.default_simulator.openqasm.parser.openqasm_ast import (
    IntegerLiteral,
    IODeclaration,
    IOKeyword,
    QubitDeclaration,
)
from braket.default_simulator.openqasm.parser.openqasm_parser import parse

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.cutting.layout import job_layout, knit_values, run_programs
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.qasm import ProgramError

#: The value of one binding: expectation values, counts, or probabilities.
BindingValue = list[float] | dict[str, int] | dict[str, float]

#: Name of the BindingResult field that carries each result type.
RESULT_FIELD = {"expectation": "expectations", "counts": "counts", "probabilities": "probabilities"}
_RESULT_TYPE = {field: kind for kind, field in RESULT_FIELD.items()}

#: How far a value may stray past a physical bound (float noise of an exact simulation: an
#: expectation of 1.0000000000000002, a probability of -1e-17 from a density matrix).
VALUE_TOLERANCE = 1e-9
#: How far a binding's probabilities may sum from 1.
PROBABILITY_SUM_TOLERANCE = 1e-6
#: Characters of a bitstring or a value quoted in a message (a forged one can be huge).
_SHOWN = 40


class ResultShapeError(ValueError):
    """A fragment result does not match what its fragment asked for."""


class ResultValueError(ResultShapeError):
    """A fragment result holds a value that no run of its fragment can produce: an
    expectation outside [-1, 1], counts that do not sum to the shots, a bitstring of the
    wrong width, probabilities that do not sum to 1."""


@dataclass(frozen=True)
class Expected:
    """What the result of one fragment must hold.

    ``result_type`` is the job's (``expectation``, ``counts`` or ``probabilities``). Each of
    the ``count`` bindings answers ``observables`` expectation values, or counts summing to
    ``shots``, or probabilities summing to 1, over bitstrings of ``width`` characters
    (:func:`bitstring_width`). ``shots`` and ``width`` are needed for counts, ``width`` for
    probabilities; expectations need neither.
    """

    count: int
    result_type: str
    observables: int = 0
    shots: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.result_type not in RESULT_FIELD:
            raise ValueError(f"unknown result type {self.result_type!r}")
        if self.result_type != "expectation" and self.width is None:
            raise ValueError(f"checking {self.result_type} needs the bitstrings' width")
        if self.result_type == "counts" and self.shots is None:
            raise ValueError("checking counts needs the shots")


@overload
def binding_values(success: pb.FragmentSuccess, expected: Expected) -> list[BindingValue]: ...


@overload
def binding_values(
    success: pb.FragmentSuccess, expected: int, result_field: str, observables: int
) -> list[BindingValue]: ...


def binding_values(
    success: pb.FragmentSuccess,
    expected: Expected | int,
    result_field: str | None = None,
    observables: int = 0,
) -> list[BindingValue]:
    """Plain values of a successful fragment, checked against what was asked.

    Raises :class:`ResultShapeError` when the result does not have the asked shape (how many
    bindings, which result type, how many values), :class:`ResultValueError` (a subclass)
    when a value is not physically possible. The older form ``(success, bindings,
    result_field, observables)`` (``result_field`` a BindingResult field: ``expectations``)
    checks expectation values only.
    """
    if not isinstance(expected, Expected):
        if result_field not in _RESULT_TYPE:
            raise ValueError(f"unknown result field {result_field!r}")
        expected = Expected(expected, _RESULT_TYPE[result_field], observables)
    if len(success.results) != expected.count:
        raise ResultShapeError(
            f"{len(success.results)} binding results for a fragment of {expected.count} bindings"
        )
    field = RESULT_FIELD[expected.result_type]
    values: list[BindingValue] = []
    for index, item in enumerate(success.results):
        kind = item.WhichOneof("value")
        if kind != field:
            raise ResultShapeError(f"a {kind} result where {field} was asked")
        if kind == "expectations":
            values.append(check_expectations(index, item.expectations.values, expected.observables))
        elif kind == "counts":
            assert expected.shots is not None and expected.width is not None  # __post_init__
            values.append(check_counts(index, item.counts.counts, expected.shots, expected.width))
        else:
            assert expected.width is not None  # __post_init__
            values.append(
                check_probabilities(index, item.probabilities.probabilities, expected.width)
            )
    return values


def check_expectations(binding: int, values: Sequence[float], observables: int) -> list[float]:
    """The expectation values of one binding: one per observable, each finite and in
    [-1, 1] (within :data:`VALUE_TOLERANCE`)."""
    if len(values) != observables:
        raise ResultShapeError(
            f"binding {binding}: {len(values)} expectation values for {observables} observables"
        )
    bound = 1.0 + VALUE_TOLERANCE
    for k, value in enumerate(values):
        if not (math.isfinite(value) and -bound <= value <= bound):
            raise ResultValueError(
                f"binding {binding}: expectation value {value!r} of observable {k} is not in "
                "[-1, 1]"
            )
    return list(values)


def check_counts(binding: int, counts: Mapping[str, int], shots: int, width: int) -> dict[str, int]:
    """The counts of one binding: non-negative, summing to ``shots``, over bitstrings of
    ``width`` characters '0' and '1'. Checked in bulk (a binding can have a million
    bitstrings); the first offender is looked for only to name it."""
    values = dict(counts)
    _check_bitstrings(binding, values, width, "counts")
    if values and min(values.values()) < 0:
        key, count = next((k, c) for k, c in values.items() if c < 0)
        raise ResultValueError(f"binding {binding}: count {count} of {_show(key)} is negative")
    total = sum(values.values())
    if total != shots:
        raise ResultValueError(
            f"binding {binding}: counts sum to {total}, not the fragment's {shots} shots"
        )
    return values


def check_probabilities(
    binding: int, probabilities: Mapping[str, float], width: int
) -> dict[str, float]:
    """The probabilities of one binding: finite, non-negative (within
    :data:`VALUE_TOLERANCE`), summing to 1 (within :data:`PROBABILITY_SUM_TOLERANCE`), over
    bitstrings of ``width`` characters '0' and '1'."""
    values = dict(probabilities)
    _check_bitstrings(binding, values, width, "probabilities")
    if not all(map(math.isfinite, values.values())) or (
        values and min(values.values()) < -VALUE_TOLERANCE
    ):
        key, p = next(
            (k, p) for k, p in values.items() if not (math.isfinite(p) and p >= -VALUE_TOLERANCE)
        )
        raise ResultValueError(
            f"binding {binding}: probability {p!r} of {_show(key)} is not a probability"
        )
    total = math.fsum(values.values())
    if not abs(total - 1.0) <= PROBABILITY_SUM_TOLERANCE:
        raise ResultValueError(f"binding {binding}: probabilities sum to {total!r}, not 1")
    return values


def _check_bitstrings(binding: int, values: Mapping[str, Any], width: int, what: str) -> None:
    """Every key of ``values`` has ``width`` characters '0' and '1'."""
    # str.strip leaves every character from the first that is not '0' or '1' to the last
    if not values or (set(map(len, values)) == {width} and not "".join(values).strip("01")):
        return
    for key in values:
        if len(key) != width or key.strip("01"):
            raise ResultValueError(
                f"binding {binding}: {what} bitstring {_show(key)} is not {width} characters "
                "'0' or '1'"
            )


def _show(text: str) -> str:
    """``text`` quoted for a message, cut short when long."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


@lru_cache(maxsize=1024)
def bitstring_width(source: str, result_type: str, qubits: int = 0) -> int:
    """Characters of each bitstring in a ``counts`` or ``probabilities`` result of the
    program ``source``, as the agents' Braket executors write them (``nodes/program.py``):

    - counts cover the measured qubits, in measurement order, when the program has
      ``measure`` statements; otherwise every qubit the circuit uses (Braket leaves out
      declared qubits that no instruction touches);
    - probabilities name every declared qubit; a program of physical qubits only covers
      ``qubits`` when the fragment gives that count, else the qubits its circuit uses.

    Pure, and cached per program: the program is parsed and interpreted once, with its
    inputs bound to zero (a program's qubits do not depend on its inputs), as validation does.
    Raises :class:`qorchestra.qasm.ProgramError` when Braket cannot interpret it.
    """
    if result_type not in ("counts", "probabilities"):
        raise ValueError(f"{result_type} results have no bitstrings")
    try:
        tree = parse(source)
    except Exception as exc:  # the parser raises several unrelated types
        raise ProgramError(f"OpenQASM 3 syntax error: {exc}") from exc
    inputs: list[str] = []
    registers = False
    declared = 0
    for stmt in tree.statements:
        if isinstance(stmt, IODeclaration) and stmt.io_identifier == IOKeyword.input:
            inputs.append(stmt.identifier.name)
        elif isinstance(stmt, QubitDeclaration):
            registers = True
            if stmt.size is None:
                declared += 1
            elif isinstance(stmt.size, IntegerLiteral):
                declared += stmt.size.value
            else:
                raise ProgramError(f"qubit register '{stmt.qubit.name}' needs a literal size")
    if result_type == "probabilities" and (registers or qubits):
        return declared if registers else qubits
    interpreter = Interpreter()
    interpreter.context.load_inputs(dict.fromkeys(inputs, 0.0))
    try:
        interpreter.visit(tree)
    except Exception as exc:  # Braket raises ValueError, IndexError, TypeError, NameError, ...
        raise ProgramError(str(exc) or type(exc).__name__) from exc
    circuit = interpreter.context.circuit
    if result_type == "counts" and circuit.measured_qubits:
        return len(circuit.measured_qubits)
    return int(circuit.num_qubits)


@dataclass(frozen=True)
class StoredFragment:
    """A finished fragment as the store keeps it."""

    program_index: int
    binding_offset: int
    values: Sequence[BindingValue]


def assemble_result(job: CircuitsJob, fragments: Iterable[StoredFragment]) -> dict[str, Any]:
    """The job's result: for each program, the value of each binding, in binding order.

    Raises ValueError when a binding has no value or has two.
    """
    runs = run_programs(job)  # the job's programs, or the subexperiments of cut ones
    per_program: list[list[BindingValue | None]] = [
        [None] * max(1, len(job.programs[r.origin].bindings)) for r in runs
    ]
    for fragment in fragments:
        slots = per_program[fragment.program_index]
        for i, value in enumerate(fragment.values):
            position = fragment.binding_offset + i
            if slots[position] is not None:
                raise ValueError(f"program {fragment.program_index} binding {position} twice")
            slots[position] = value
    programs: list[dict[str, Any]] = []
    for index, slots in enumerate(per_program):
        missing = [i for i, v in enumerate(slots) if v is None]
        if missing:
            raise ValueError(f"program {index} has no value for bindings {missing[:10]}")
        programs.append({"index": index, "values": slots})
    result: dict[str, Any] = {
        "result_type": job.result.type.value,
        "shots": job.shots,
        "observables": list(job.result.observables),
        "programs": programs,
    }
    if job.cutting is not None:
        layout = job_layout(job)
        values = knit_values(job, layout, [p["values"] for p in programs])
        result["programs"] = [{"index": i, "values": v} for i, v in enumerate(values)]
        result["cutting"] = {str(i): plan for i, plan in layout.plans().items()}
    return result
