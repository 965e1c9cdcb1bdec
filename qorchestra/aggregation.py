"""Turning fragment results into a job's result (pure: no I/O).

Aggregation is idempotent by construction: each fragment's values are stored once, keyed by
fragment id, and the job's result is assembled from the stored values in program/binding order,
so a redelivered or duplicated result cannot change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.cutting.layout import job_layout, knit_values, run_programs
from qorchestra.jobs.circuits import CircuitsJob

#: The value of one binding: expectation values, counts, or probabilities.
BindingValue = list[float] | dict[str, int] | dict[str, float]


class ResultShapeError(ValueError):
    """A fragment result does not match what its fragment asked for."""


def binding_values(
    success: pb.FragmentSuccess, expected_count: int, result_type: str, observables: int
) -> list[BindingValue]:
    """Plain values of a successful fragment, checked against what was asked."""
    if len(success.results) != expected_count:
        raise ResultShapeError(
            f"{len(success.results)} binding results for a fragment of {expected_count} bindings"
        )
    values: list[BindingValue] = []
    for item in success.results:
        kind = item.WhichOneof("value")
        if kind != result_type:
            raise ResultShapeError(f"a {kind} result where {result_type} was asked")
        if kind == "expectations":
            if len(item.expectations.values) != observables:
                raise ResultShapeError(
                    f"{len(item.expectations.values)} expectation values for {observables} "
                    "observables"
                )
            values.append(list(item.expectations.values))
        elif kind == "counts":
            values.append(dict(item.counts.counts))
        else:
            values.append(dict(item.probabilities.probabilities))
    return values


#: Name of the BindingResult field that carries each result type.
RESULT_FIELD = {"expectation": "expectations", "counts": "counts", "probabilities": "probabilities"}


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
