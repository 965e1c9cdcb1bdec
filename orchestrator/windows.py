"""Backpressure: a circuits job's fragments are written in windows as in-flight room frees up.

A job of 100,000 bindings is not planned into 6,250 fragment rows and outbox messages at once:
planning writes at most ``max_inflight_per_job`` unanswered fragments of a job and at most
``max_inflight_per_pool`` of a pool, and tops jobs up as results come in. The job's
``fragments_total`` is the full count from the start, so progress and completion are right.

The position of the next window is the number of fragment rows the job already has, kept in
``jobs.fragments_written``: planning is deterministic (``plan_fragments``), and rows are only
ever written by planning (``repository.add_fragments``).

Memory does not grow with the job: the orchestrator keeps only the spec's head (its programs
without their bindings, and each program's binding count) and reads each window's bindings as
a slice of ``jobs.spec`` (``qorchestra/store/spec_slices.py``), for planning and re-dispatch.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby, islice

from cachetools import LRUCache
from sqlalchemy.orm import Session

from qorchestra.config import Settings
from qorchestra.cutting.layout import run_programs
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.planning import FragmentPlan, build_fragment, plan_fragments
from qorchestra.store import repository as repo
from qorchestra.store import spec_slices
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.models import Job

logger = logging.getLogger(__name__)

#: Spec heads kept between top-ups (a spec is immutable; a head holds no bindings).
SPEC_CACHE_SIZE = 64

#: Jobs whose cutting flag is kept (a bool each).
CUT_CACHE_SIZE = 4096
#: Bindings read, built and flushed at a time while a window is written: a window of 256
#: fragments of 256 bindings would otherwise hold 65,536 bindings (and their messages) at once.
WRITE_CHUNK_BINDINGS = 4096


@dataclass(frozen=True)
class SpecHead:
    """A job's spec without its bindings (``spec.programs[i].bindings`` are empty), and how
    many bindings each program has."""

    spec: CircuitsJob
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class BindingRead:
    """One slice of a program's bindings that a window needs."""

    origin: int  # the job's program
    offset: int
    count: int


# Both caches are read and filled by the dispatch loop and the results loop (two threads):
# each access holds the lock, and a miss is filled outside it (two threads may both read the
# store for the same job; the spec is immutable, so either copy is right).
_lock = threading.Lock()
_specs: LRUCache[str, SpecHead] = LRUCache(maxsize=SPEC_CACHE_SIZE)
_cut: LRUCache[str, bool] = LRUCache(maxsize=CUT_CACHE_SIZE)


# ---------------------------------------------------------------- pure


def count_fragments(
    spec: CircuitsJob, bindings_per_fragment: int, sizes: Sequence[int] | None = None
) -> int:
    """How many fragments the whole job has (``sizes``: see ``plan_fragments``)."""
    return sum(1 for _ in plan_fragments(spec, bindings_per_fragment, sizes))


def window(
    spec: CircuitsJob,
    bindings_per_fragment: int,
    start: int,
    count: int,
    sizes: Sequence[int] | None = None,
) -> list[FragmentPlan]:
    """Fragments ``start`` .. ``start + count - 1`` of the job's plan (fewer at its end)."""
    if count <= 0:
        return []
    plans = plan_fragments(spec, bindings_per_fragment, sizes)
    return list(islice(plans, start, start + count))


def chunks(plans: Sequence[FragmentPlan], max_bindings: int) -> list[Sequence[FragmentPlan]]:
    """Consecutive runs of ``plans`` of at most ``max_bindings`` bindings each (a plan larger
    than that is a run of its own), in order."""
    out: list[Sequence[FragmentPlan]] = []
    first, bindings = 0, 0
    for i, plan in enumerate(plans):
        if i > first and bindings + plan.binding_count > max_bindings:
            out.append(plans[first:i])
            first, bindings = i, 0
        bindings += plan.binding_count
    if first < len(plans):
        out.append(plans[first:])
    return out


def binding_reads(spec: CircuitsJob, plans: Sequence[FragmentPlan]) -> list[BindingRead]:
    """The slices of bindings that ``plans`` run: one per run of consecutive fragments of the
    same program (a window's fragments are contiguous), so a window costs a few reads."""
    runs = run_programs(spec)
    reads = []
    for index, group in groupby(plans, key=lambda p: p.program_index):
        members = list(group)
        first = members[0].binding_offset
        end = max(p.binding_offset + p.binding_count for p in members)
        reads.append(BindingRead(runs[index].origin, first, end - first))
    return reads


def fragment_bindings(
    spec: CircuitsJob,
    plans: Sequence[FragmentPlan],
    reads: Sequence[BindingRead],
    slices: Sequence[Sequence[dict[str, float]]],
) -> list[Sequence[dict[str, float]]]:
    """Each plan's bindings, cut from the ``slices`` read for ``reads`` (in their order)."""
    runs = run_programs(spec)
    out: list[Sequence[dict[str, float]]] = []
    for plan in plans:
        origin = runs[plan.program_index].origin
        for read, values in zip(reads, slices, strict=True):
            end = plan.binding_offset + plan.binding_count
            if read.origin == origin and read.offset <= plan.binding_offset <= end <= (
                read.offset + read.count
            ):
                start = plan.binding_offset - read.offset
                out.append(values[start : start + plan.binding_count])
                break
        else:
            raise ValueError(f"no bindings read for {plan}")
    return out


# ---------------------------------------------------------------- with a session


def cached_head(session: Session, job: Job) -> SpecHead:
    """The job's spec head, from a small cache; its bindings are never loaded."""
    with _lock:
        head = _specs.get(job.id)
    if head is None:
        raw, sizes = spec_slices.spec_head(session, job.id)
        head = SpecHead(CircuitsJob.model_validate(raw), tuple(sizes))
        with _lock:
            _specs[job.id] = head
    return head


def cached_spec(session: Session, job: Job) -> CircuitsJob:
    """The job's parsed spec WITHOUT its bindings (programs, result, cutting: all that a run
    list, a layout or a message needs); ``full_spec`` has them."""
    return cached_head(session, job).spec


def full_spec(job: Job) -> CircuitsJob:
    """The job's whole spec, bindings included (loads it: for cut jobs' knitting only)."""
    return CircuitsJob.model_validate(job.spec)


def read_bindings(
    session: Session, job_id: str, head: SpecHead, plans: Sequence[FragmentPlan]
) -> list[Sequence[dict[str, float]]]:
    """Each plan's bindings, read as slices of the stored spec."""
    reads = binding_reads(head.spec, plans)
    slices = [
        spec_slices.binding_slice(session, job_id, r.origin, r.offset, r.count) for r in reads
    ]
    return fragment_bindings(head.spec, plans, reads, slices)


def is_cut(session: Session, job: Job) -> bool:
    """Whether the job cuts its circuits, read without loading its (possibly huge) spec."""
    with _lock:
        cut = _cut.get(job.id)
    if cut is None:
        cut = repo.cuts_circuits(session, job.id)
        with _lock:
            _cut[job.id] = cut
    return cut


def forget(job_id: str) -> None:
    """Drop what is cached for a job (it ended)."""
    with _lock:
        _specs.pop(job_id, None)
        _cut.pop(job_id, None)


def write_window(
    session: Session, job: Job, head: SpecHead, settings: Settings, start: int, count: int
) -> int:
    """Write fragments ``start`` .. of the job, with their outbox rows; returns how many.

    The window is written in chunks of ``WRITE_CHUNK_BINDINGS`` bindings, each flushed before
    the next is read, so the memory it takes does not grow with the window.
    """
    plans = window(head.spec, settings.fragment_bindings, start, count, head.sizes)
    total = job.fragments_total
    topic = settings.fragments_topic(job.pool)
    for chunk in chunks(plans, WRITE_CHUNK_BINDINGS):
        bindings = read_bindings(session, job.id, head, chunk)
        fragments = [
            repo.NewFragment(
                id=fid,
                program_index=plan.program_index,
                binding_offset=plan.binding_offset,
                binding_count=plan.binding_count,
                payload=build_fragment(
                    head.spec, plan, job_id=job.id, fragment_id=fid, attempt=1, bindings=values
                ).SerializeToString(),
            )
            for plan, values in zip(chunk, bindings, strict=True)
            for fid in [str(uuid.uuid4())]
        ]
        repo.add_fragments(session, job, fragments, topic, control_plane_signer(session))
    job.fragments_total = total  # add_fragments counts what it wrote; the total is fixed
    return len(plans)
