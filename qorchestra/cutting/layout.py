"""Cutting inside a circuits job (pure, no I/O): which programs are cut, the programs that
actually run (the *run list*), and the job's result knitted back from theirs.

A job with ``cutting`` set cuts every program wider than ``cutting.max_subcircuit_qubits``;
:func:`settle_cutting` (called by validation) turns it on for programs wider than the pool and
caps ``k`` at the pool's limit, so the stored spec alone decides the plan. It also stores
the search's work budget (``cutting.search_budget``, from ``QORCH_CUT_SEARCH_TIMEOUT_S``): the
search counts work, not time, so with the budget in the spec every orchestrator process
recomputes the same plan, and planning, re-dispatch and aggregation the same run list, even if
the setting changes while the job runs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field

from qorchestra.config import Settings
from qorchestra.cutting.experiments import CutExperiment
from qorchestra.cutting.ir import CuttingError
from qorchestra.cutting.plan import DEFAULT_SEARCH_STATES, CutPlan, plan_cuts, search_budget
from qorchestra.qasm import analyze


class _Program(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def bindings(self) -> Sequence[Mapping[str, float]]: ...


class _Result(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def observables(self) -> Sequence[str]: ...


class CuttableJob(Protocol):
    """What cutting reads of a circuits job (``qorchestra.jobs.circuits.CuttableJob``): the
    cutting maths does not depend on the request schema."""

    @property
    def pool(self) -> str: ...
    @property
    def result(self) -> _Result: ...
    @property
    def programs(self) -> Sequence[_Program]: ...
    @property
    def cutting(self) -> CuttingSpec | None: ...


class CuttingSpec(BaseModel):
    """Run programs wider than the nodes as subcircuits that fit (expectation results only)."""

    model_config = ConfigDict(extra="forbid")

    max_subcircuit_qubits: int = Field(
        ge=2,
        le=64,
        description="Qubits of the widest subcircuit (cut gates add none); programs wider than "
        "this are cut. Capped at the pool's qubit limit.",
    )
    search_budget: int | None = Field(
        None,
        ge=1,
        description="Work units the cut search may spend (300000 per second of "
        "QORCH_CUT_SEARCH_TIMEOUT_S). Set at submission from that setting, and capped by it; "
        "stored so that every orchestrator recomputes the same plan. Null: unbounded (jobs "
        "stored before the setting existed).",
    )


@dataclass(frozen=True)
class RunProgram:
    """One program of the run list: what a fragment carries."""

    source: str
    observables: tuple[str, ...]
    qubits: int  # 0 = as the program declares
    origin: int  # index of the job's program it serves
    subcircuit: int | None = None  # for a cut program: which subcircuit


@dataclass(frozen=True)
class JobLayout:
    """The run list of a job and the cut experiment of each cut program."""

    runs: tuple[RunProgram, ...]
    experiments: dict[int, CutExperiment]  # origin program index -> its experiment
    first_run: tuple[int, ...]  # index in ``runs`` of each job program's first run

    def plans(self) -> dict[int, dict[str, Any]]:
        """The cut plan of each cut program, for people: cuts, subcircuits, overhead."""
        return {
            origin: {
                **experiment.plan.summary(),
                "subexperiments": len(experiment.programs),
                "programs_per_subcircuit": experiment.program_counts,
            }
            for origin, experiment in self.experiments.items()
        }


@lru_cache(maxsize=256)
def program_width(source: str) -> int:
    """Qubits of a program (Braket's count, as validation makes it)."""
    return analyze(source).qubits


@lru_cache(maxsize=64)
def plan_for(source: str, max_width: int, max_states: int, max_work: int | None) -> CutPlan:
    """The cut plan of one program (cached: validation, planning and aggregation ask)."""
    return plan_cuts(source, max_width, max_states=max_states, max_work=max_work)


@lru_cache(maxsize=64)
def experiment_for(
    source: str,
    observables: tuple[str, ...],
    max_width: int,
    max_states: int,
    max_work: int | None = None,
) -> CutExperiment:
    """The cut experiment of one program (cached: planning, re-dispatch and aggregation all
    ask for it)."""
    return CutExperiment(plan_for(source, max_width, max_states, max_work), observables)


def settled_spec(cutting: CuttingSpec | None, k: int, settings: Settings) -> CuttingSpec:
    """``cutting`` with ``k`` capped at ``k`` and the search budget capped at the setting's
    (a new spec for ``k`` when None)."""
    budget = search_budget(settings.cut_search_timeout_s)
    if cutting is None:
        return CuttingSpec(max_subcircuit_qubits=k, search_budget=budget)
    return CuttingSpec(
        max_subcircuit_qubits=min(cutting.max_subcircuit_qubits, k),
        search_budget=min(cutting.search_budget or budget, budget),
    )


def settle_cutting(job: CuttableJob, settings: Settings) -> CuttingSpec | None:
    """The job's cutting as it is stored: on when a program is wider than the pool, ``k``
    capped at the pool's limit, and the search's work budget set. Only expectation jobs can
    be cut; for others the job's own setting is returned for validation to refuse."""
    limit = settings.max_qubits(job.pool)
    if job.result.type != "expectation" or limit < 2:
        return job.cutting  # nothing useful to cut into
    if job.cutting is not None:
        return settled_spec(job.cutting, limit, settings)
    widths = []
    for program in job.programs:
        try:
            widths.append(program_width(program.source))
        except ValueError:
            continue  # validation reports it
    if widths and max(widths) > limit:
        return settled_spec(None, limit, settings)
    return None


def limit_problems(plan: CutPlan, settings: Settings) -> list[str]:
    """Why a plan is beyond the limits (empty when it is not), with its numbers. Counts the
    subexperiments without building them: a plan far beyond the limits can have
    astronomically many."""
    subexperiments = sum(plan.programs_per_subcircuit)
    numbers = (
        f"{len(plan.cuts)} cuts ({plan.gate_cuts} gates, {plan.wire_cuts} wires), "
        f"{subexperiments} subexperiments, sampling overhead {plan.sampling_overhead:.4g}"
    )
    if plan.truncated:
        numbers += " (search cut short by QORCH_CUT_SEARCH_TIMEOUT_S)"
    problems = []
    if plan.sampling_overhead > settings.max_cut_overhead:
        problems.append(
            f"cut plan beyond the limit: {numbers}; the sampling overhead may be at most "
            f"{settings.max_cut_overhead:g} (QORCH_MAX_CUT_OVERHEAD)"
        )
    if subexperiments > settings.max_cut_subexperiments:
        problems.append(
            f"cut plan beyond the limit: {numbers}; at most {settings.max_cut_subexperiments} "
            "subexperiments per program (QORCH_MAX_CUT_SUBEXPERIMENTS)"
        )
    return problems


def cut_problems(job: CuttableJob, index: int, settings: Settings) -> list[str]:
    """Why program ``index`` of a job with cutting cannot run as planned (empty when it can):
    it cannot be cut, or its plan is beyond the limits (the message gives the numbers)."""
    if job.cutting is None:
        return []
    if job.result.type != "expectation":
        return [f"cutting needs result type expectation, not {job.result.type}"]
    program = job.programs[index]
    k = job.cutting.max_subcircuit_qubits
    if program_width(program.source) <= k:
        return []
    try:
        plan = plan_for(program.source, k, DEFAULT_SEARCH_STATES, job.cutting.search_budget)
    except CuttingError as exc:
        return [f"cannot be cut into subcircuits of {k} qubits: {exc}"]
    return limit_problems(plan, settings)


def run_programs(job: CuttableJob) -> tuple[RunProgram, ...]:
    """The job's run list (its own programs when nothing is cut: the fast path)."""
    if job.cutting is None:
        observables = tuple(job.result.observables)
        return tuple(RunProgram(p.source, observables, 0, i) for i, p in enumerate(job.programs))
    return job_layout(job).runs


#: Layouts by what they depend on: the programs' sources, the observables, the cutting spec
#: and the search's state limit (never the bindings). Planning, re-dispatch and the results
#: loop ask from two threads, so every access holds the lock.
_LAYOUTS: LRUCache[tuple[Any, ...], JobLayout] = LRUCache(maxsize=32)
_LAYOUTS_LOCK = threading.Lock()


def job_layout(job: CuttableJob, max_states: int = DEFAULT_SEARCH_STATES) -> JobLayout:
    """The run list of a job: its programs as they are, or the subexperiments of cut ones."""
    k = job.cutting.max_subcircuit_qubits if job.cutting is not None else None
    budget = job.cutting.search_budget if job.cutting is not None else None
    observables = tuple(job.result.observables)
    key = (tuple(p.source for p in job.programs), observables, k, budget, max_states)
    with _LAYOUTS_LOCK:
        cached = _LAYOUTS.get(key)
    if cached is not None:
        return cached
    runs: list[RunProgram] = []
    experiments: dict[int, CutExperiment] = {}
    first: list[int] = []
    for index, program in enumerate(job.programs):
        first.append(len(runs))
        if k is None or program_width(program.source) <= k:
            runs.append(RunProgram(program.source, observables, 0, index))
            continue
        experiment = experiment_for(program.source, observables, k, max_states, budget)
        experiments[index] = experiment
        runs.extend(
            RunProgram(p.source, p.observables, p.qubits, index, p.subcircuit)
            for p in experiment.programs
        )
    layout = JobLayout(tuple(runs), experiments, tuple(first))
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
    return layout


def circuit_runs(job: CuttableJob) -> int:
    """Circuit runs the job makes: each program's bindings, once per subexperiment for a cut
    program. Progress counts these (``bindings_total``), as the aggregator counts every
    fragment's bindings."""
    return sum(max(1, len(job.programs[run.origin].bindings)) for run in run_programs(job))


def cut_plans(job: CuttableJob) -> dict[str, dict[str, Any]] | None:
    """The cut plan of each cut program, keyed by program index (None when nothing is cut)."""
    if job.cutting is None:
        return None
    plans = job_layout(job).plans()
    return {str(index): plan for index, plan in plans.items()} or None


def plan_metrics(plans: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The plans' numbers as flat event metrics: totals over the cut programs, and the
    largest subcircuit and sampling overhead."""
    values = list(plans.values())
    return {
        "cut_programs": float(len(values)),
        "cuts": float(sum(p["cuts"] for p in values)),
        "gate_cuts": float(sum(p["gate_cuts"] for p in values)),
        "wire_cuts": float(sum(p["wire_cuts"] for p in values)),
        "subcircuits": float(sum(len(p["subcircuits"]) for p in values)),
        "subexperiments": float(sum(p["subexperiments"] for p in values)),
        "max_subcircuit_width": float(max(s["width"] for p in values for s in p["subcircuits"])),
        "sampling_overhead": float(max(p["sampling_overhead"] for p in values)),
        "exact_search": float(all(p["exact_search"] for p in values)),
    }


def describe_plans(plans: dict[str, dict[str, Any]]) -> str:
    """'program 0 cut into 3 subcircuits (widths 6, 6, 4): 2 gate cuts, 0 wire cuts, 35
    subexperiments, sampling overhead 81' for each cut program, for people."""
    parts = []
    for index, plan in plans.items():
        widths = ", ".join(str(s["width"]) for s in plan["subcircuits"])
        name = index if not index.isdigit() else f"program {index}"
        parts.append(
            f"{name} cut into {len(plan['subcircuits'])} subcircuits (widths {widths}): "
            f"{plan['gate_cuts']} gate cuts, {plan['wire_cuts']} wire cuts, "
            f"{plan['subexperiments']} subexperiments, sampling overhead "
            f"{plan['sampling_overhead']:.4g}" + _search_note(plan)
        )
    return "; ".join(parts)


def _search_note(plan: Mapping[str, Any]) -> str:
    if plan.get("search_truncated"):
        return " (beam search cut short by its time budget)"
    return "" if plan["exact_search"] else " (beam search)"


def describe_run(run: RunProgram) -> str:
    """'program 0' or 'program 0, subcircuit 1' for messages a person reads."""
    if run.subcircuit is None:
        return f"program {run.origin}"
    return f"program {run.origin}, subcircuit {run.subcircuit}"


def knit_values(
    job: CuttableJob, layout: JobLayout, run_values: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """Per job program, the value of each binding, from the values of every run.

    ``run_values[r][j]`` is binding ``j`` of run ``r``; cut programs get their expectation
    values reconstructed, the others are passed through.
    """
    out: list[list[Any]] = []
    for index, program in enumerate(job.programs):
        start = layout.first_run[index]
        experiment = layout.experiments.get(index)
        if experiment is None:
            out.append(list(run_values[start]))
            continue
        results = run_values[start : start + len(experiment.programs)]
        bindings = program.bindings or [{}]
        out.append(experiment.reconstruct(results, bindings))
    return out


def with_progress(
    plans: Mapping[str, Mapping[str, Any]],
    runs: Mapping[int, tuple[int, int]],
    bindings: Mapping[int, int] | None,
) -> dict[str, dict[str, Any]]:
    """The plans with each subcircuit's progress (``runs_done``, ``runs_total``).

    ``runs`` gives, per fragment ``program_index``, the circuit runs in its fragments written
    so far and those done. A circuits job (``bindings``: bindings of each cut program) numbers
    its runs over the whole job: one per uncut program, then each cut program's
    subexperiments, which :class:`CutExperiment` orders by subcircuit
    (``programs_per_subcircuit``); a subcircuit's total is its subexperiments times its
    program's bindings. A training job (``bindings`` None, plan key ``model``) numbers the
    model's subexperiments from 0, and its totals are what the steps planned so far wrote.
    """
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    covered = 0  # job programs whose runs precede ``offset``
    for key in sorted(plans, key=lambda k: int(k) if k.isdigit() else -1):
        plan = plans[key]
        if bindings is not None and key.isdigit():
            offset += int(key) - covered  # the uncut programs before it: one run each
            covered = int(key) + 1
        counts = [int(c) for c in plan["programs_per_subcircuit"]]
        subcircuits = []
        for sub, count in zip(plan["subcircuits"], counts, strict=True):
            indices = range(offset, offset + count)
            done = sum(runs.get(i, (0, 0))[1] for i in indices)
            if bindings is not None:
                total = count * max(1, bindings.get(int(key), 0))
            else:
                total = sum(runs.get(i, (0, 0))[0] for i in indices)
            subcircuits.append({**sub, "runs_done": done, "runs_total": total})
            offset += count
        out[key] = {**plan, "subcircuits": subcircuits}
    return out
