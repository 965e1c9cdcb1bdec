"""Jobs and results straight in the store: queueing a circuits job as the API's submit route
does, and counting a fragment's success as the orchestrator's results loop does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from orchestrator.results import apply_result
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope


def store_circuits_job(factory: SessionFactory, spec: CircuitsJob, name: str = "t") -> str:
    """Insert ``spec`` as a QUEUED circuits job; returns its id."""
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
        assert apply_result(session, result, settings).kind == "counted"
