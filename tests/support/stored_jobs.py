"""Jobs and results straight in the store: queueing a circuits job as the API's submit route
does, planning it, and applying a fragment's result as the orchestrator's results loop does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.dispatch import plan_next_job
from orchestrator.results import Outcome, apply_result
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope


def store_circuits_job(
    factory: SessionFactory,
    spec: CircuitsJob,
    name: str = "t",
    tenant: str = "default",
    max_queue_s: float | None = None,
) -> str:
    """Insert ``spec`` as a QUEUED circuits job of ``tenant``; returns its id."""
    job_id = str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.create_job(
            session,
            job_id=job_id,
            name=name,
            kind="circuits",
            pool=spec.pool,
            spec=spec.model_dump(mode="json"),
            result_type=spec.result.type.value,
            observables=len(spec.result.observables),
            bindings_total=sum(max(1, len(p.bindings)) for p in spec.programs),
            tenant=tenant,
            max_queue_s=max_queue_s,
        )
    return job_id


def count_success(
    factory: SessionFactory,
    settings: Any,
    job_id: str,
    fragment_id: str,
    results: Sequence[pb.BindingResult],
) -> None:
    """Apply a first-attempt success of one fragment in its own transaction; it must count."""
    result = pb.FragmentResult(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=1,
        node_id="test",
        success=pb.FragmentSuccess(results=list(results)),
    )
    with session_scope(factory) as session:
        assert apply_as_agent(session, result, settings).kind == "counted"


#: Two qubits, one input ``a``: the program of the jobs ``submit`` stores.
PROGRAM = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[0];"


def submit(
    factory: SessionFactory, bindings: int = 10, tenant: str = "default", **spec_changes: Any
) -> str:
    """Store a QUEUED job of ``tenant`` running ``PROGRAM`` with ``bindings`` bindings and two
    observables (``spec_changes`` replace top-level fields of its spec); returns its id."""
    payload: dict[str, Any] = {
        "result": {"type": "expectation", "observables": ["ZI", "IZ"]},
        "programs": [{"source": PROGRAM, "bindings": [{"a": i / 10} for i in range(bindings)]}],
    }
    payload.update(spec_changes)
    return store_circuits_job(factory, CircuitsJob.model_validate(payload), tenant=tenant)


def plan_until(factory: SessionFactory, settings: Settings, job_id: str) -> None:
    """Plan queued jobs (other tests' included) until ``job_id`` is planned."""
    while True:
        with factory() as session:
            if repo.get_job(session, job_id).status != "QUEUED":
                return
        assert plan_next_job(factory, settings) is not None


def fragments_of(factory: SessionFactory, job_id: str) -> list[Any]:
    """The job's fragment rows in program and binding order."""
    with factory() as session:
        from sqlalchemy import select

        from qorchestra.store.models import Fragment

        return list(
            session.execute(
                select(Fragment)
                .where(Fragment.job_id == job_id)
                .order_by(Fragment.program_index, Fragment.binding_offset)
            ).scalars()
        )


def success_for(
    fragment: Any, job_id: str, value: float = 0.5, attempt: int = 1
) -> pb.FragmentResult:
    """A success of ``fragment``: per binding the expectations ``[value, binding index / 100]``
    (values a run can produce: the aggregator refuses any outside [-1, 1])."""
    return pb.FragmentResult(
        fragment_id=fragment.id,
        job_id=job_id,
        attempt=attempt,
        node_id="test-node",
        success=pb.FragmentSuccess(
            results=[
                pb.BindingResult(expectations=pb.Expectations(values=[value, i / 100]))
                for i in range(fragment.binding_count)
            ]
        ),
    )


def apply(factory: SessionFactory, settings: Settings, result: pb.FragmentResult) -> str:
    """Apply ``result`` in its own transaction; returns what became of it (``counted``, ...)."""
    with session_scope(factory) as session:
        return apply_as_agent(session, result, settings).kind


def apply_as_agent(session: Session, result: pb.FragmentResult, settings: Settings) -> Outcome:
    """Apply ``result`` as the results loop applies one that an enrolled agent of its job's
    pool signed, answering the dispatch of its attempt (its nonce is set here)."""
    result.nonce = control_plane_signer(session).nonce(result.fragment_id, result.attempt)
    pool = repo.job_pool(session, result.job_id) or "local-sv"
    return apply_result(session, result, settings, pool)


def stored_events(database_url: str, job_id: str) -> list[tuple[str, str]]:
    """A job's events as stored, oldest first: (type, message)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return [(e.type, e.message) for e in repo.events_after(session, job_id, 0)]
    finally:
        engine.dispose()
