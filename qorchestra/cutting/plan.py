"""A cut plan: which gates and wires are cut, and what each subcircuit holds (pure, no I/O).

:func:`plan_cuts` reads a program, finds the cuts (:mod:`qorchestra.cutting.finder`) and lays
out each subcircuit: its local qubits (one per wire segment), its operations in circuit
order, and the places where a cut's decomposition puts something that changes from one
subexperiment to the next (a *role*). A cut gate's side acts in place on its own qubit (a
measuring term measures it mid-circuit), so gate cuts add no qubits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from braket.circuits import Instruction, gates

from qorchestra.cutting.finder import Event, Segment, find_cuts
from qorchestra.cutting.gates import ZZForm, zz_form
from qorchestra.cutting.ir import CircuitIR, CuttingError, read_circuit, remap
from qorchestra.cutting.qpd import (
    GATE_ACTIONS,
    GATE_TERMS,
    PREPARATIONS,
    WIRE_GAMMA,
    WIRE_TERMS,
)

#: How many states the cut search may keep per operation (bounds its time).
DEFAULT_SEARCH_STATES = 2000
#: Work units (successor states x qubits, see :func:`qorchestra.cutting.finder.find_cuts`)
#: a second of search is worth, to turn a time limit into a work budget. Measured at 0.56-0.91
#: million a second on an idle core of a small shared machine; half the slowest leaves room
#: for a loaded one.
SEARCH_WORK_PER_SECOND = 300_000


def search_budget(seconds: float) -> int:
    """The work budget that keeps the cut search within about ``seconds`` on a slow core."""
    return max(1, int(seconds * SEARCH_WORK_PER_SECOND))


RoleKind = Literal["gate0", "gate1", "upstream", "downstream"]


@dataclass(frozen=True)
class GateCut:
    """A cut two-qubit gate: operation ``op_index`` on ``qubits`` (side 0, side 1)."""

    op_index: int
    qubits: tuple[int, int]
    form: ZZForm

    @property
    def terms(self) -> int:
        """Terms of its decomposition."""
        return len(GATE_TERMS)

    @property
    def gamma(self) -> float:
        """Its 1-norm (largest over the inputs when the angle depends on them)."""
        return self.form.gamma()


@dataclass(frozen=True)
class WireCut:
    """A cut wire: ``qubit``'s segment ``upstream`` ends where ``downstream`` starts."""

    qubit: int
    upstream: Segment
    downstream: Segment

    @property
    def terms(self) -> int:
        """Terms of its decomposition."""
        return len(WIRE_TERMS)

    @property
    def gamma(self) -> float:
        """Its 1-norm."""
        return WIRE_GAMMA


Cut = GateCut | WireCut


@dataclass(frozen=True)
class Role:
    """Where a cut acts inside one subcircuit: side 0 or 1 of a cut gate, or the upstream
    (measured) or downstream (prepared) end of a cut wire, on local qubit ``local``."""

    cut: int  # index into CutPlan.cuts
    kind: RoleKind
    local: int


@dataclass(frozen=True)
class Item:
    """One step of a subcircuit: a fixed instruction, or the role whose choice goes here."""

    instruction: Instruction | None = None
    role: int | None = None  # index into Subcircuit.roles


@dataclass(frozen=True)
class Subcircuit:
    """A piece that runs on its own: wire segments and its steps in order."""

    segments: tuple[Segment, ...]
    width: int  # qubits: one per segment
    roles: tuple[Role, ...]
    items: tuple[Item, ...]
    outputs: tuple[tuple[int, int], ...]  # (original qubit, local qubit) of final segments

    @property
    def qubits(self) -> tuple[int, ...]:
        """Original qubits with a segment here."""
        return tuple(sorted({s.qubit for s in self.segments}))

    @property
    def ancillas(self) -> int:
        """Ancilla qubits: none, gate cuts measure in place (kept for the plan's schema)."""
        return self.width - len(self.segments)


@dataclass(frozen=True)
class CutPlan:
    """The cuts of one program and the subcircuits they leave."""

    circuit: CircuitIR
    max_width: int
    cuts: tuple[Cut, ...]
    subcircuits: tuple[Subcircuit, ...]
    exact: bool  # the search proved no cheaper plan exists
    search_states: int
    truncated: bool = False  # the search's work budget narrowed it (a cheaper plan may exist)

    @property
    def gate_cuts(self) -> int:
        """Number of cut gates."""
        return sum(isinstance(c, GateCut) for c in self.cuts)

    @property
    def wire_cuts(self) -> int:
        """Number of cut wires."""
        return sum(isinstance(c, WireCut) for c in self.cuts)

    @property
    def sampling_overhead(self) -> float:
        """γ², the factor by which shots must grow for the same error (product over cuts)."""
        return math.prod(c.gamma for c in self.cuts) ** 2

    @property
    def terms(self) -> int:
        """Terms of the joint decomposition (products of one term per cut)."""
        return math.prod(c.terms for c in self.cuts)

    @property
    def programs_per_subcircuit(self) -> list[int]:
        """Subexperiment programs of each subcircuit, counted without building them: the
        product over the cuts it takes part in of their distinct choices there (5 actions at
        one side of a cut gate, 6 term pairs when it holds both sides, 6 prepared states at
        the downstream end of a cut wire; the upstream end only adds observables). Equals
        :attr:`CutExperiment.program_counts <qorchestra.cutting.experiments.CutExperiment>`."""
        counts = []
        for sub in self.subcircuits:
            kinds: dict[int, set[str]] = {}
            for role in sub.roles:
                if role.kind != "upstream":
                    kinds.setdefault(role.cut, set()).add(role.kind)
            count = 1
            for found in kinds.values():
                if found == {"gate0", "gate1"}:
                    count *= len(set(GATE_TERMS))
                elif "downstream" in found:
                    count *= len(PREPARATIONS)
                else:
                    count *= len(GATE_ACTIONS)
            counts.append(count)
        return counts

    def summary(self) -> dict[str, object]:
        """The plan as plain data, for people and for the job record."""
        return {
            "cuts": len(self.cuts),
            "gate_cuts": self.gate_cuts,
            "wire_cuts": self.wire_cuts,
            "subcircuits": [
                {"qubits": list(s.qubits), "width": s.width, "ancillas": s.ancillas}
                for s in self.subcircuits
            ],
            "max_subcircuit_qubits": self.max_width,
            "sampling_overhead": round(self.sampling_overhead, 6),
            "terms": self.terms,
            "exact_search": self.exact,
            "search_truncated": self.truncated,
        }


def plan_cuts(
    source: str,
    max_width: int,
    *,
    max_states: int = DEFAULT_SEARCH_STATES,
    max_work: int | None = None,
) -> CutPlan:
    """Read ``source`` and cut it into subcircuits of at most ``max_width`` qubits, the
    search bounded by ``max_states`` per operation and ``max_work`` in all (None: unbounded).

    Raises CuttingError when the program cannot be read or no cuts make it fit.
    """
    circuit = read_circuit(source)
    return plan_circuit(circuit, max_width, max_states=max_states, max_work=max_work)


def plan_circuit(
    circuit: CircuitIR,
    max_width: int,
    *,
    max_states: int = DEFAULT_SEARCH_STATES,
    max_work: int | None = None,
) -> CutPlan:
    """:func:`plan_cuts` for a circuit already read."""
    forms: dict[int, ZZForm] = {}
    events = []
    for index, op in enumerate(circuit.operations):
        if len(op.qubits) < 2:
            continue
        form = zz_form(op.instruction)
        cost = None
        if form is not None:
            forms[index] = form
            cost = 2.0 * math.log(form.gamma())
        events.append(Event(index, op.qubits, cost))
    try:
        solution = find_cuts(
            circuit.qubits, events, max_width, max_states=max_states, max_work=max_work
        )
    except ValueError as exc:
        raise CuttingError(str(exc)) from exc

    cuts: list[Cut] = []
    for op_index in solution.gate_cuts:
        a, b = circuit.operations[op_index].qubits
        cuts.append(GateCut(op_index, (a, b), forms[op_index]))
    segments_of: dict[int, list[Segment]] = {}
    for sub in solution.subcircuits:
        for segment in sub:
            segments_of.setdefault(segment.qubit, []).append(segment)
    for starts in segments_of.values():
        starts.sort(key=lambda s: s.start)
    for segment in solution.wire_cuts:
        chain = segments_of[segment.qubit]
        upstream = chain[chain.index(segment) - 1]
        cuts.append(WireCut(segment.qubit, upstream, segment))
    cuts.sort(key=_cut_order)
    groups = _pack(solution.subcircuits, cuts, segments_of, max_width)
    subcircuits = _lay_out(circuit, groups, cuts, segments_of)
    return CutPlan(
        circuit=circuit,
        max_width=max_width,
        cuts=tuple(cuts),
        subcircuits=subcircuits,
        exact=solution.exact,
        search_states=solution.states,
        truncated=solution.truncated,
    )


def _cut_order(cut: Cut) -> tuple[int, int]:
    if isinstance(cut, GateCut):
        return (cut.op_index, cut.qubits[0])
    return (cut.downstream.start, cut.qubit)


def _live(segments_of: dict[int, list[Segment]], qubit: int, op_index: int) -> Segment:
    """The segment of ``qubit`` that operation ``op_index`` acts on."""
    current = segments_of[qubit][0]
    for segment in segments_of[qubit]:
        if segment.start <= op_index:
            current = segment
    return current


def _pack(
    groups: Sequence[tuple[Segment, ...]],
    cuts: Sequence[Cut],
    segments_of: dict[int, list[Segment]],
    max_width: int,
) -> list[list[Segment]]:
    """Put components that no cut touches (one variant each) into others that have room."""
    group_of = {segment: i for i, group in enumerate(groups) for segment in group}
    widths = [len(g) for g in groups]
    touched: set[int] = set()
    for cut in cuts:
        if isinstance(cut, WireCut):
            touched.update((group_of[cut.upstream], group_of[cut.downstream]))
            continue
        for qubit in cut.qubits:
            index = group_of[_live(segments_of, qubit, cut.op_index)]
            touched.add(index)
    slots = [(list(groups[i]), widths[i]) for i in sorted(touched)]
    free = sorted(
        (list(g) for i, g in enumerate(groups) if i not in touched),
        key=lambda g: (-len(g), g[0].qubit),
    )
    for group in free:
        for k, (members, width) in enumerate(slots):
            if width + len(group) <= max_width:
                slots[k] = (members + group, width + len(group))
                break
        else:
            slots.append((group, len(group)))
    result = [sorted(members, key=lambda s: (s.qubit, s.start)) for members, _ in slots]
    return sorted(result, key=lambda g: (g[0].qubit, g[0].start))


def _lay_out(
    circuit: CircuitIR,
    groups: Sequence[Sequence[Segment]],
    cuts: Sequence[Cut],
    segments_of: dict[int, list[Segment]],
) -> tuple[Subcircuit, ...]:
    where: dict[Segment, tuple[int, int]] = {}  # segment -> (subcircuit, local qubit)
    for index, group in enumerate(groups):
        for local, segment in enumerate(group):
            where[segment] = (index, local)
    width = [len(g) for g in groups]
    roles: list[list[Role]] = [[] for _ in groups]
    items: list[list[Item]] = [[] for _ in groups]

    def live(qubit: int, op_index: int) -> Segment:
        return _live(segments_of, qubit, op_index)

    def add_role(sub: int, role: Role) -> int:
        roles[sub].append(role)
        return len(roles[sub]) - 1

    gate_cut_at: dict[int, int] = {}
    for cut_index, cut in enumerate(cuts):
        if isinstance(cut, GateCut):
            gate_cut_at[cut.op_index] = cut_index
        else:
            sub, local = where[cut.downstream]
            items[sub].append(Item(role=add_role(sub, Role(cut_index, "downstream", local))))
            up_sub, up_local = where[cut.upstream]
            add_role(up_sub, Role(cut_index, "upstream", up_local))

    for op_index, op in enumerate(circuit.operations):
        at = gate_cut_at.get(op_index)
        if at is not None:
            cut = cuts[at]
            assert isinstance(cut, GateCut)
            for side, qubit in enumerate(cut.qubits):
                sub, local = where[live(qubit, op_index)]
                kind: RoleKind = "gate0" if side == 0 else "gate1"
                role = add_role(sub, Role(at, kind, local))
                steps = [Item(Instruction(g, target=[local])) for g in cut.form.before[side]]
                phase = cut.form.phases[side]
                if phase is not None:
                    steps.append(Item(Instruction(gates.Rz(phase), target=[local])))
                steps.append(Item(role=role))
                steps.extend(Item(Instruction(g, target=[local])) for g in cut.form.after[side])
                items[sub].extend(steps)
            continue
        places = {q: where[live(q, op_index)] for q in op.qubits}
        subs = {sub for sub, _ in places.values()}
        if len(subs) != 1:
            raise CuttingError(f"operation {op_index} spans subcircuits {sorted(subs)}")
        (sub,) = subs
        mapping = {q: local for q, (_, local) in places.items()}
        items[sub].append(Item(remap(op.instruction, mapping)))

    subcircuits = []
    for index, group in enumerate(groups):
        outputs = tuple((s.qubit, where[s][1]) for s in group if segments_of[s.qubit][-1] == s)
        subcircuits.append(
            Subcircuit(
                segments=tuple(group),
                width=width[index],
                roles=tuple(roles[index]),
                items=tuple(items[index]),
                outputs=outputs,
            )
        )
    return tuple(subcircuits)
