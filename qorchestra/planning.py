"""Cutting a circuits job into fragments, and sharing a pool's room between jobs (pure: no
I/O).

A fragment carries one program and a contiguous slice of its bindings, so the per-task overhead
of a node agent is paid once per fragment rather than once per circuit.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.cutting.layout import run_programs
from qorchestra.jobs.circuits import CircuitsJob, ResultType

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


def binding_counts(job: CircuitsJob) -> list[int]:
    """How many bindings each of the job's programs has."""
    return [len(p.bindings) for p in job.programs]


def plan_fragments(
    job: CircuitsJob, bindings_per_fragment: int, sizes: Sequence[int] | None = None
) -> Iterator[FragmentPlan]:
    """Fragments covering every binding of every program exactly once, in order.

    A program without bindings runs once, with no inputs. ``sizes`` gives each program's
    binding count when ``job`` was read without its bindings (``binding_counts`` otherwise).
    """
    if bindings_per_fragment < 1:
        raise ValueError("bindings_per_fragment must be at least 1")
    counts = binding_counts(job) if sizes is None else sizes
    for index, run in enumerate(run_programs(job)):  # a cut program runs as its subexperiments
        total = max(1, counts[run.origin])
        for offset in range(0, total, bindings_per_fragment):
            yield FragmentPlan(index, offset, min(bindings_per_fragment, total - offset))


def build_fragment(
    job: CircuitsJob,
    plan: FragmentPlan,
    *,
    job_id: str,
    fragment_id: str,
    attempt: int,
    qubits: int = 0,
    bindings: Sequence[Mapping[str, float]] | None = None,
) -> pb.Fragment:
    """The Kafka message for one planned fragment (``attempt`` counts dispatches from 1).

    ``bindings`` are the fragment's own bindings when ``job`` was read without them (the
    slice the plan names); by default they are cut from ``job``.
    """
    run = run_programs(job)[plan.program_index]
    if bindings is None:
        program = job.programs[run.origin]
        end = plan.binding_offset + plan.binding_count
        bindings = program.bindings[plan.binding_offset : end]
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
        bindings=[pb.Binding(values=b) for b in bindings] or [pb.Binding()],
        shots=job.shots,
        result_kind=RESULT_KINDS[job.result.type],
        observables=run.observables,
        qubits=qubits or run.qubits,
        dispatched_at=dispatched,
    )


@dataclass(frozen=True)
class Wanting:
    """A running job that has fragments left to write: its tenant, the fragments that tenant
    has in flight on the pool, and how many more the job may take (its own cap and what it
    has left)."""

    tenant: str
    tenant_in_flight: int
    job_room: int


def share_room(pool_room: int, wanting: Sequence[Wanting]) -> list[int]:
    """How many fragments each job of ``wanting`` (oldest first) may write now, out of a
    pool's ``pool_room`` free slots, fairly between tenants.

    Max-min fair: each slot goes to the tenant with the fewest fragments in flight on the pool
    (counting what this pass already gave it), and within a tenant to its oldest job with room.
    A tenant with one job and a tenant with fifty get the same share of a busy pool; a tenant
    alone takes every slot. Ties go to the tenant whose oldest wanting job comes first.
    """
    grants = [0] * len(wanting)
    queues: dict[str, list[int]] = {}
    for index, job in enumerate(wanting):
        if job.job_room > 0:
            queues.setdefault(job.tenant, []).append(index)
    heap = [(wanting[q[0]].tenant_in_flight, q[0], tenant) for tenant, q in queues.items()]
    heapq.heapify(heap)
    while pool_room > 0 and heap:
        load, first, tenant = heapq.heappop(heap)
        queue = queues[tenant]
        grants[queue[0]] += 1
        pool_room -= 1
        if grants[queue[0]] == wanting[queue[0]].job_room:
            queue.pop(0)
        if queue:
            heapq.heappush(heap, (load + 1, first, tenant))
    return grants


def room(job_in_flight: int, pool_in_flight: int, settings: Settings) -> int:
    """How many more fragments of a job may be planned now."""
    return max(
        0,
        min(
            settings.max_inflight_per_job - job_in_flight,
            settings.max_inflight_per_pool - pool_in_flight,
        ),
    )
