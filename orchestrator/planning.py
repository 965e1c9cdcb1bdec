"""Cutting a circuits job into fragments (pure: no I/O).

A fragment carries one program and a contiguous slice of its bindings, so the per-task overhead
of a node agent is paid once per fragment rather than once per circuit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from orchestrator.cutting.jobs import run_programs
from orchestrator.spec import JobCreate, ResultType
from proto.qorch.v1 import fragments_pb2 as pb

RESULT_KINDS = {
    ResultType.COUNTS: pb.RESULT_KIND_COUNTS,
    ResultType.PROBABILITIES: pb.RESULT_KIND_PROBABILITIES,
    ResultType.EXPECTATION: pb.RESULT_KIND_EXPECTATION,
}


@dataclass(frozen=True)
class FragmentPlan:
    """Which bindings of which program one fragment runs."""

    program_index: int
    binding_offset: int
    binding_count: int


def plan_fragments(job: JobCreate, bindings_per_fragment: int) -> Iterator[FragmentPlan]:
    """Fragments covering every binding of every program exactly once, in order.

    A program without bindings runs once, with no inputs.
    """
    if bindings_per_fragment < 1:
        raise ValueError("bindings_per_fragment must be at least 1")
    for index, run in enumerate(run_programs(job)):  # a cut program runs as its subexperiments
        total = max(1, len(job.programs[run.origin].bindings))
        for offset in range(0, total, bindings_per_fragment):
            yield FragmentPlan(index, offset, min(bindings_per_fragment, total - offset))


def build_fragment(
    job: JobCreate,
    plan: FragmentPlan,
    *,
    job_id: str,
    fragment_id: str,
    attempt: int,
    qubits: int = 0,
) -> pb.Fragment:
    """The Kafka message for one planned fragment (``attempt`` counts dispatches from 1)."""
    run = run_programs(job)[plan.program_index]
    program = job.programs[run.origin]
    window = program.bindings[plan.binding_offset : plan.binding_offset + plan.binding_count]
    dispatched = Timestamp()
    dispatched.GetCurrentTime()
    return pb.Fragment(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=attempt,
        pool=job.pool,
        program_index=plan.program_index,
        program=run.source,
        binding_offset=plan.binding_offset,
        bindings=[pb.Binding(values=b) for b in window] or [pb.Binding()],
        shots=job.shots,
        result_kind=RESULT_KINDS[job.result.type],
        observables=run.observables,
        qubits=qubits or run.qubits,
        dispatched_at=dispatched,
    )
