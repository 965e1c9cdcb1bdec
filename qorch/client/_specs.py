"""Job specs from what ``submit``, ``train`` and ``minimize`` are given: a spec as it is, or
circuits (OpenQASM 3, Braket or Qiskit) with the options of a circuits job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from qorch.programs import Program, to_program

#: Values for a program's inputs, keyed by input name or by the circuit's parameter (object or
#: name).
Binding: TypeAlias = Mapping[Any, float]
#: A program (``str``, Braket ``Circuit``, Qiskit ``QuantumCircuit``, ``Program``), or one with
#: bindings of its own: ``(program, [binding, ...])``.
ProgramItem: TypeAlias = Any


def circuits_spec(
    programs: ProgramItem | Sequence[ProgramItem],
    *,
    bindings: Sequence[Binding] | None = None,
    observables: Sequence[str] | None = None,
    result: str | None = None,
    shots: int | None = None,
    pool: str | Sequence[str] | None = None,
    name: str | None = None,
    max_cost_usd: float | None = None,
    max_queue_s: float | None = None,
    cutting: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``circuits`` job. ``programs``: one program, or a list (or tuple) of them, each
    possibly a ``(program, bindings)`` pair; ``bindings`` are those of every program given
    without its own. ``result`` is by default ``expectation`` with ``observables``, else
    ``counts`` with ``shots``, else ``probabilities``. ``pool``: one pool, or several in
    order of preference."""
    items = list(programs) if isinstance(programs, list | tuple) else [programs]
    if not items:
        raise ValueError("a circuits job needs at least one program")
    observables = list(observables or [])
    if result is None:
        result = "expectation" if observables else ("counts" if shots else "probabilities")
    spec: dict[str, Any] = {
        "kind": "circuits",
        "pool": (pool if isinstance(pool, str) else list(pool)) if pool else "local-sv",
        "shots": shots or 0,
        "result": {"type": result, "observables": observables},
        "programs": [_program(item, bindings) for item in items],
    }
    optional = {
        "name": name,
        "max_cost_usd": max_cost_usd,
        "max_queue_s": max_queue_s,
        "cutting": dict(cutting) if cutting is not None else None,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    return spec


def _program(item: ProgramItem, bindings: Sequence[Binding] | None) -> dict[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[1], str | Mapping):
        item, bindings = item
    program: Program = to_program(item)
    return {"source": program.source, "bindings": [program.binding(b) for b in bindings or []]}


def job_spec(job: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """What ``submit`` sends: ``job`` if it is a whole spec (a mapping), else a circuits job of
    the programs ``job`` holds, with ``options``."""
    if isinstance(job, Mapping):
        return given_spec(job, options)
    return circuits_spec(job, **options)


def given_spec(spec: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A spec given whole: the options of a circuits job go in it, not next to it."""
    extra = sorted(key for key, value in options.items() if value is not None)
    if extra:
        raise TypeError(f"a job spec holds its own options; got {', '.join(extra)} as well")
    return dict(spec)


def optimisation_spec(
    kind: str, spec: Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A ``train`` or ``minimize`` job: ``spec`` with ``fields`` over it (``None`` fields are
    left out, so the API's defaults apply)."""
    merged = {**(spec or {}), **{key: value for key, value in fields.items() if value is not None}}
    given = merged.setdefault("kind", kind)
    if given != kind:
        raise ValueError(f"a {kind} job cannot have kind {given!r}")
    return merged
