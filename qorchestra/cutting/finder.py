"""Where to cut: gate and wire cuts so that every subcircuit has at most ``k`` qubits.

The search walks the multi-qubit operations in circuit order. A state says which block
(future subcircuit) each qubit's current wire segment belongs to, and how wide each block is
(its wire segments: a gate cut measures mid-circuit in place and adds no qubit). At each
operation whose qubits sit in different blocks it may

- merge the blocks (free, if the merged block fits),
- cut the gate (if it is a cuttable two-qubit gate),
- cut some of the wires just before the operation and move their new segments into the block
  of the others (or into a new block).

Costs add up as ``log(γ²)`` (the log of the sampling overhead), ties broken by the number of
cuts. States with the same blocks are merged keeping the cheapest, so the search is a dynamic
program and exact while the number of distinct states per step stays under ``max_states``;
beyond that only the cheapest ``max_states`` are kept (a beam search), and the plan is marked
heuristic. The work is bounded by ``operations * max_states * actions``, and by
``max_work`` when given: a count of successor states times qubits (what canonicalising them
costs), spread over the remaining operations, that narrows the beam (down to a greedy search of
width 1) so the whole search stays within it. Both bounds count work, not time, so the search
is deterministic: the same circuit and bounds always get the same plan. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

WIRE_COST = math.log(16.0)

#: labels: block of each qubit's current segment (canonical: numbered by first appearance);
#: widths: width of each block, indexed by label.
_Key = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Event:
    """A multi-qubit operation as the search sees it."""

    op_index: int
    qubits: tuple[int, ...]
    gate_cost: float | None  # log(γ²) of cutting it, None when it cannot be cut


@dataclass(frozen=True)
class _Action:
    kind: str  # "none", "join" (merge and/or cut wires), "gate"
    wires: tuple[int, ...] = ()  # qubits whose wire is cut before the operation


@dataclass
class _Node:
    cost: float
    cuts: int
    parent: _Node | None
    action: _Action | None


@dataclass(frozen=True)
class Segment:
    """A piece of one qubit's wire, from operation ``start`` (0 = the beginning) on."""

    qubit: int
    start: int


@dataclass(frozen=True)
class CutSolution:
    """Where to cut, and which wire segments form each subcircuit."""

    gate_cuts: tuple[int, ...]  # operation indices
    wire_cuts: tuple[Segment, ...]  # the downstream segment each wire cut starts
    subcircuits: tuple[tuple[Segment, ...], ...]  # segments of each subcircuit, sorted
    log_overhead: float
    exact: bool  # the search was exhaustive: no cheaper plan exists
    states: int  # the largest number of states the search held at one step
    truncated: bool = False  # the work budget narrowed the beam below max_states
    work: int = 0  # work spent, in the units of max_work


class NoCutPlan(ValueError):
    """No set of cuts fits the subcircuits into the qubit limit."""


def find_cuts(
    qubits: int,
    events: Sequence[Event],
    max_width: int,
    *,
    max_states: int = 2000,
    max_work: int | None = None,
) -> CutSolution:
    """The cheapest cuts found so that every subcircuit has at most ``max_width`` qubits,
    keeping at most ``max_states`` states per operation and spending at most about
    ``max_work`` work units (None: no such bound)."""
    if max_width < 1:
        raise ValueError("max_width must be at least 1")
    if any(len(e.qubits) > max_width for e in events):
        widest = max(len(e.qubits) for e in events)
        raise NoCutPlan(f"an operation acts on {widest} qubits; subcircuits allow {max_width}")
    frontier: dict[_Key, _Node] = {(tuple(range(qubits)), (1,) * qubits): _Node(0.0, 0, None, None)}
    exact = True
    truncated = False
    peak = 1
    work = 0
    # Qubits that no later operation touches cannot change a later choice: forget them, so
    # states that differ only there are merged.
    active: list[frozenset[int]] = []
    later: set[int] = set()
    for event in reversed(events):
        active.append(frozenset(later))
        later.update(event.qubits)
    active.reverse()
    for step, event in enumerate(events):
        following: dict[_Key, _Node] = {}
        for key, node in frontier.items():
            moves = _moves(key, event, max_width, active[step])
            work += len(moves) * qubits
            for action, new_key, cost, cuts in moves:
                total, count = node.cost + cost, node.cuts + cuts
                best = following.get(new_key)
                if best is None or (total, count) < (best.cost, best.cuts):
                    following[new_key] = _Node(total, count, node, action)
        if not following:
            raise NoCutPlan(
                f"no cuts fit operation {event.op_index} on qubits {list(event.qubits)} into "
                f"subcircuits of {max_width} qubits"
            )
        peak = max(peak, len(following))
        width = max_states
        if max_work is not None and step + 1 < len(events):
            width = min(width, _affordable(max_work - work, events[step + 1 :], qubits))
        if len(following) > width:
            exact = False
            truncated = truncated or width < max_states
            ranked = sorted(following.items(), key=lambda kv: (kv[1].cost, kv[1].cuts, kv[0]))
            following = dict(ranked[:width])
        frontier = following
    best = min(frontier.values(), key=lambda n: (n.cost, n.cuts))
    actions: list[_Action] = []
    back: _Node | None = best
    while back is not None and back.action is not None:
        actions.append(back.action)
        back = back.parent
    actions.reverse()
    solution = _replay(qubits, events, actions, best.cost, exact, peak)
    return replace(solution, truncated=truncated, work=work)


def _affordable(budget: int, rest: Sequence[Event], qubits: int) -> int:
    """States the next operation may expand so that the rest of the search fits ``budget``:
    an even share of it per remaining operation, over the most successors one state can
    have there (every subset of the operation's wires cut, or the gate cut). Never below 1:
    a beam of one is a greedy search, and one always succeeds (cutting every wire of an
    operation into a new block fits, as no operation is wider than the limit)."""
    successors = 2 ** len(rest[0].qubits) + 1
    share = budget // len(rest)
    return max(1, share // (successors * qubits))


def _moves(
    key: _Key, event: Event, max_width: int, active: frozenset[int]
) -> list[tuple[_Action, _Key, float, int]]:
    labels, widths = key
    involved = sorted({labels[q] for q in event.qubits})
    if len(involved) == 1:
        return [(_Action("none"), _canonical(list(labels), list(widths), active), 0.0, 0)]
    moves: list[tuple[_Action, _Key, float, int]] = []
    qs = event.qubits
    for size in range(len(qs) + 1):
        for cut in combinations(qs, size):
            rest = [q for q in qs if q not in cut]
            merged = {labels[q] for q in rest}
            if any(labels[q] in merged for q in cut):
                continue  # cutting a wire into its own block gains nothing
            width = sum(widths[b] for b in merged) + len(cut)
            if width > max_width:
                continue
            new_labels = list(labels)
            new_widths = list(widths) + [width]
            target = len(widths)
            for q in range(len(labels)):
                if labels[q] in merged:
                    new_labels[q] = target
            for q in cut:
                new_labels[q] = target
            moves.append(
                (
                    _Action("join", tuple(cut)),
                    _canonical(new_labels, new_widths, active),
                    WIRE_COST * len(cut),
                    len(cut),
                )
            )
    if event.gate_cost is not None and len(qs) == 2:
        moves.append(
            (
                _Action("gate"),
                _canonical(list(labels), list(widths), active),
                event.gate_cost,
                1,
            )
        )
    return moves


def _canonical(labels: list[int], widths: list[int], active: frozenset[int]) -> _Key:
    """Blocks renumbered by first appearance among ``active`` qubits (the others get -1);
    blocks without an active qubit dropped."""
    renumber: dict[int, int] = {}
    for q, label in enumerate(labels):
        if q in active and label not in renumber:
            renumber[label] = len(renumber)
    new_widths = [0] * len(renumber)
    for old, new in renumber.items():
        new_widths[new] = widths[old]
    return (
        tuple(renumber[label] if q in active else -1 for q, label in enumerate(labels)),
        tuple(new_widths),
    )


def _replay(
    qubits: int,
    events: Sequence[Event],
    actions: Sequence[_Action],
    cost: float,
    exact: bool,
    peak: int,
) -> CutSolution:
    """Turn the chosen actions into cuts and the segments of each subcircuit."""
    current = [Segment(q, 0) for q in range(qubits)]
    parent: dict[Segment, Segment] = {s: s for s in current}

    def find(s: Segment) -> Segment:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    def union(a: Segment, b: Segment) -> None:
        parent[find(a)] = find(b)

    gate_cuts: list[int] = []
    wire_cuts: list[Segment] = []
    for event, action in zip(events, actions, strict=True):
        if action.kind == "gate":
            gate_cuts.append(event.op_index)
            continue
        for q in action.wires:
            segment = Segment(q, event.op_index)
            parent[segment] = segment
            current[q] = segment
            wire_cuts.append(segment)
        first = current[event.qubits[0]]
        for q in event.qubits[1:]:
            union(current[q], first)
    groups: dict[Segment, list[Segment]] = {}
    for segment in parent:
        groups.setdefault(find(segment), []).append(segment)
    subcircuits = sorted(
        (tuple(sorted(g, key=lambda s: (s.qubit, s.start))) for g in groups.values()),
        key=lambda g: (g[0].qubit, g[0].start),
    )
    return CutSolution(
        gate_cuts=tuple(gate_cuts),
        wire_cuts=tuple(wire_cuts),
        subcircuits=tuple(subcircuits),
        log_overhead=cost,
        exact=exact,
        states=peak,
    )
