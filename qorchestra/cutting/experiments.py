"""Subexperiments of a cut plan and the reconstruction of expectation values (pure, no I/O).

Each subcircuit has *variants*: one per combination of choices at its program-changing roles
(five actions at each side of a cut gate, six prepared states at the downstream end of a cut
wire). The upstream end of a cut wire only changes what is measured, so it adds observables,
not programs. Each variant is one OpenQASM 3 program that takes the original program's inputs
and is asked for a list of Pauli-string expectation values: the requested observable restricted
to the subcircuit's output qubits and the Pauli measured at cut wires. A gate side that measures
does so mid-circuit into the ``qorch_sign`` register, which weights every value of the program
by the outcomes' signs (:mod:`qorchestra.cutting.signs`).

For one binding and one observable ``O = ⊗ O_s``, the whole circuit's value is::

    ⟨O⟩ = Σ_t c_t(binding) Π_s ⟨O_s⟩(subcircuit s, variant of t, letters of t)

over the joint terms ``t`` (one term per cut). The sum is a tensor contraction, one index per
cut, done with ``numpy.einsum``.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from braket.circuits import Instruction, gates
from numpy.typing import NDArray

from qorchestra.cutting.ir import AngleFunction, SignMeasure, to_openqasm
from qorchestra.cutting.plan import CutPlan, GateCut, Role, Subcircuit
from qorchestra.cutting.qpd import (
    GATE_ACTIONS,
    GATE_TERMS,
    PREPARATIONS,
    WIRE_COEFFICIENTS,
    WIRE_TERMS,
    gate_coefficients,
)

#: Gates that prepare each downstream state from |0>, in circuit order.
_PREPARE = {
    "0": (),
    "1": (gates.X(),),
    "+": (gates.H(),),
    "-": (gates.X(), gates.H()),
    "+i": (gates.H(), gates.S()),
    "-i": (gates.H(), gates.Si()),
}
#: Bindings reconstructed per einsum call (bounds memory).
_CHUNK = 256


@dataclass(frozen=True)
class SubProgram:
    """One subexperiment to run: an OpenQASM 3 program with the original inputs, and the
    Pauli strings (over its own qubits, qubit 0 first) to measure for every binding."""

    subcircuit: int
    variant: tuple[int, ...]  # choice at each program-changing role of the subcircuit
    source: str
    qubits: int
    observables: tuple[str, ...]


@dataclass(frozen=True)
class _Gather:
    """Where each entry of one subcircuit's tensor comes from."""

    cuts: tuple[int, ...]  # the cuts indexing the tensor's trailing axes
    program: NDArray[np.int64]  # [observable, term...] -> index into CutExperiment.programs
    observable: NDArray[np.int64]  # [observable, term...] -> index in that program's list


class CutExperiment:
    """The programs to run for a cut program and the function that knits their results.

    ``programs`` are independent; run every one of them for every binding (same shots) and
    pass their expectation values to :meth:`reconstruct`.
    """

    def __init__(self, plan: CutPlan, observables: Sequence[str]) -> None:
        for obs in observables:
            if len(obs) != plan.circuit.qubits:
                raise ValueError(
                    f"observable {obs!r} has {len(obs)} letters; the program has "
                    f"{plan.circuit.qubits} qubits"
                )
        self.plan = plan
        self.observables = tuple(observables)
        self.programs: list[SubProgram] = []
        self._gathers: list[_Gather] = []
        aliases = dict(plan.circuit.aliases)
        self._angles = [
            AngleFunction(c.form.theta, aliases) if isinstance(c, GateCut) else None
            for c in plan.cuts
        ]
        for index, sub in enumerate(plan.subcircuits):
            self._gathers.append(self._build(index, sub))

    @property
    def program_counts(self) -> list[int]:
        """Programs per subcircuit."""
        counts = [0] * len(self.plan.subcircuits)
        for program in self.programs:
            counts[program.subcircuit] += 1
        return counts

    def _build(self, index: int, sub: Subcircuit) -> _Gather:
        plan = self.plan
        choosing = [i for i, r in enumerate(sub.roles) if r.kind != "upstream"]
        cuts = tuple(sorted({r.cut for r in sub.roles}))
        dims = [plan.cuts[c].terms for c in cuts]
        variants: dict[tuple[int, ...], tuple[int, dict[str, int]]] = {}
        shape = (len(self.observables), *dims)
        program_index = np.zeros(shape, dtype=np.int64)
        observable_index = np.zeros(shape, dtype=np.int64)
        for terms in itertools.product(*(range(d) for d in dims)):
            term_of = dict(zip(cuts, terms, strict=True))
            variant = tuple(_choice(sub.roles[i], term_of[sub.roles[i].cut]) for i in choosing)
            if variant not in variants:
                variants[variant] = (len(self.programs) + len(variants), {})
            slot, strings = variants[variant]
            base = _letters(sub, term_of)
            for o, observable in enumerate(self.observables):
                letters = list(base)
                for qubit, local in sub.outputs:
                    letters[local] = observable[qubit]
                text = "".join(letters)
                position = strings.setdefault(text, len(strings))
                program_index[(o, *terms)] = slot
                observable_index[(o, *terms)] = position
        for variant, (_, strings) in variants.items():
            self.programs.append(
                SubProgram(
                    subcircuit=index,
                    variant=variant,
                    source=_source(plan, sub, dict(zip(choosing, variant, strict=True)), index),
                    qubits=sub.width,
                    observables=tuple(strings),
                )
            )
        return _Gather(cuts, program_index, observable_index)

    def coefficients(self, bindings: Sequence[Mapping[str, float]]) -> list[NDArray[np.float64]]:
        """Per cut, the coefficients of its terms for each binding: ``[binding, term]``."""
        result = []
        for angle in self._angles:
            if angle is not None:
                theta = np.array([angle(b) for b in bindings], dtype=np.float64)
                result.append(gate_coefficients(theta))
            else:
                result.append(np.tile(WIRE_COEFFICIENTS, (len(bindings), 1)))
        return result

    def reconstruct(
        self,
        results: Sequence[Sequence[Sequence[float]]],
        bindings: Sequence[Mapping[str, float]],
    ) -> list[list[float]]:
        """Expectation values of the whole program: ``[binding][observable]``.

        ``results[p][j]`` are the values of program ``p`` (in :attr:`programs` order) for
        binding ``j``, in that program's observables order. ``bindings`` give the input values
        (the cut gates' angles may depend on them); a program without inputs has one empty
        binding.
        """
        self._check(results, len(bindings))
        out: list[list[float]] = []
        for start in range(0, len(bindings), _CHUNK):
            chunk = range(start, min(len(bindings), start + _CHUNK))
            operands, subscripts = self._operands(results, [bindings[j] for j in chunk], chunk)
            values = np.einsum(",".join(subscripts) + "->bo", *operands, optimize="greedy")
            out.extend([float(v) for v in row] for row in values)
        return out

    def weights(self, bindings: Sequence[Mapping[str, float]]) -> NDArray[np.float64]:
        """Per program, the 1-norm of the joint terms that use it (their coefficients' sizes
        averaged over ``bindings``), up to a factor shared by its subcircuit's programs."""
        if not bindings:
            bindings = [{}]
        sizes = [np.abs(c).mean(axis=0) for c in self.coefficients(bindings)]
        out = np.zeros(len(self.programs), dtype=np.float64)
        for gather in self._gathers:
            tensor = np.ones((), dtype=np.float64)
            for cut in gather.cuts:
                tensor = np.multiply.outer(tensor, sizes[cut])
            np.add.at(
                out,
                gather.program[0].ravel(),
                np.broadcast_to(tensor, gather.program[0].shape).ravel(),
            )
        return out

    def allocate_shots(self, shots: int, bindings: Sequence[Mapping[str, float]] = ()) -> list[int]:
        """Shots per program (in :attr:`programs` order) for a job of ``shots`` per program:
        each subcircuit's ``shots x its programs`` split in proportion to the programs'
        :meth:`weights` (largest remainders), at least one each, so the estimator's error
        drops for the same total."""
        if shots <= 0:
            raise ValueError("shots must be positive to allocate them")
        weights = self.weights(bindings)
        out = [0] * len(self.programs)
        for sub in range(len(self.plan.subcircuits)):
            members = [p for p, program in enumerate(self.programs) if program.subcircuit == sub]
            budget = shots * len(members)
            share = weights[members]
            if share.sum() <= 0:
                share = np.ones(len(members))
            # one shot each first, the rest in proportion
            exact = (budget - len(members)) * share / share.sum()
            given = np.floor(exact).astype(np.int64)
            order = np.argsort(-(exact - given), kind="stable")
            given[order[: budget - len(members) - int(given.sum())]] += 1
            for p, count in zip(members, given, strict=True):
                out[p] = 1 + int(count)
        return out

    def standard_errors(
        self,
        results: Sequence[Sequence[Sequence[float]]],
        bindings: Sequence[Mapping[str, float]],
        shots: Sequence[int],
    ) -> list[list[float]]:
        """The standard error of each reconstructed value, ``[binding][observable]``, for
        ``results`` estimated with ``shots[p]`` shots of program ``p``.

        First order (the value is affine in each subexperiment value): every estimate ``r``
        of a ±1 quantity has variance ``(1 - r²) / shots``; programs are independent, and the
        estimates of one program are taken as fully correlated (an upper bound)."""
        self._check(results, len(bindings))
        if len(shots) != len(self.programs) or any(s <= 0 for s in shots):
            raise ValueError("one positive shot count per program is needed")
        out: list[list[float]] = []
        for start in range(0, len(bindings), _CHUNK):
            chunk = range(start, min(len(bindings), start + _CHUNK))
            out.extend(self._errors(results, [bindings[j] for j in chunk], chunk, shots))
        return out

    def _errors(
        self,
        results: Sequence[Sequence[Sequence[float]]],
        bindings: Sequence[Mapping[str, float]],
        chunk: range,
        shots: Sequence[int],
    ) -> list[list[float]]:
        operands, subscripts = self._operands(results, bindings, chunk)
        first = len(self.plan.cuts)
        variance = np.zeros((len(chunk), len(self.observables)), dtype=np.float64)
        for s, gather in enumerate(self._gathers):
            others = [i for i in range(len(operands)) if i != first + s]
            # d value / d (entry of subcircuit s's table), one per table entry
            slope = np.einsum(
                ",".join(subscripts[i] for i in others) + "->" + subscripts[first + s],
                *(operands[i] for i in others),
                optimize="greedy",
            )
            for p in np.unique(gather.program):
                values = np.asarray([results[p][j] for j in chunk], dtype=np.float64)
                sigma = np.sqrt(np.clip(1.0 - values**2, 0.0, None) / shots[p])
                per_observable = np.zeros((len(chunk), len(self.observables), values.shape[1]))
                for o in range(len(self.observables)):
                    mask = gather.program[o] == p
                    if mask.any():
                        np.add.at(
                            per_observable[:, o, :].T,
                            gather.observable[o][mask],
                            slope[:, o][:, mask].T,
                        )
                spread = np.einsum("bok,bk->bo", np.abs(per_observable), sigma)
                variance += spread**2
        return [[float(v) for v in row] for row in np.sqrt(variance)]

    def _check(self, results: Sequence[Sequence[Sequence[float]]], count: int) -> None:
        if len(results) != len(self.programs):
            raise ValueError(f"{len(results)} program results for {len(self.programs)} programs")
        for p, (program, values) in enumerate(zip(self.programs, results, strict=True)):
            if len(values) != count:
                raise ValueError(f"program {p} has {len(values)} binding results, not {count}")
            for j, row in enumerate(values):
                if len(row) != len(program.observables):
                    raise ValueError(
                        f"program {p} binding {j}: {len(row)} values for "
                        f"{len(program.observables)} observables"
                    )

    def _operands(
        self,
        results: Sequence[Sequence[Sequence[float]]],
        bindings: Sequence[Mapping[str, float]],
        chunk: range,
    ) -> tuple[list[NDArray[np.float64]], list[str]]:
        """The einsum operands: each cut's coefficients ``[binding, term]``, then each
        subcircuit's values ``[binding, observable, term of each of its cuts]``."""
        letters = string.ascii_letters.replace("b", "").replace("o", "")
        if len(self.plan.cuts) > len(letters):
            raise ValueError(f"at most {len(letters)} cuts can be reconstructed")
        operands: list[NDArray[np.float64]] = []
        subscripts: list[str] = []
        for cut, coefficients in enumerate(self.coefficients(bindings)):
            operands.append(coefficients)
            subscripts.append("b" + letters[cut])
        for gather in self._gathers:
            table = np.empty((len(chunk), *gather.program.shape), dtype=np.float64)
            for p in np.unique(gather.program):
                mask = gather.program == p
                values = np.asarray([results[p][j] for j in chunk], dtype=np.float64)
                table[:, mask] = values[:, gather.observable[mask]]
            operands.append(table)
            subscripts.append("bo" + "".join(letters[c] for c in gather.cuts))
        return operands, subscripts


def _choice(role: Role, term: int) -> int:
    """Index of the program-changing choice a term makes at ``role``."""
    if role.kind == "gate0":
        return GATE_ACTIONS.index(GATE_TERMS[term][0])
    if role.kind == "gate1":
        return GATE_ACTIONS.index(GATE_TERMS[term][1])
    return PREPARATIONS.index(WIRE_TERMS[term][1])


def _letters(sub: Subcircuit, term_of: Mapping[int, int]) -> list[str]:
    """Pauli letters the cuts ask for on the subcircuit's qubits (I elsewhere)."""
    letters = ["I"] * sub.width
    for role in sub.roles:
        term = term_of[role.cut]
        if role.kind == "upstream":
            letters[role.local] = WIRE_TERMS[term][0]
    return letters


def _source(plan: CutPlan, sub: Subcircuit, choices: Mapping[int, int], index: int) -> str:
    instructions: list[Instruction | SignMeasure] = []
    for item in sub.items:
        if item.instruction is not None:
            instructions.append(item.instruction)
            continue
        assert item.role is not None
        role = sub.roles[item.role]
        choice = choices[item.role]
        if role.kind == "downstream":
            prepare = _PREPARE[PREPARATIONS[choice]]
            instructions.extend(Instruction(g, target=[role.local]) for g in prepare)
            continue
        action = GATE_ACTIONS[choice]
        if action == "z":
            instructions.append(Instruction(gates.Z(), target=[role.local]))
        elif action == "r+":
            instructions.append(Instruction(gates.Rz(-math.pi / 2), target=[role.local]))
        elif action == "r-":
            instructions.append(Instruction(gates.Rz(math.pi / 2), target=[role.local]))
        elif action == "measure":
            instructions.append(SignMeasure(role.local))
    header = f"qorchestra cut: subcircuit {index} of {len(plan.subcircuits)}"
    return to_openqasm(instructions, sub.width, plan.circuit, header=header)
