"""Queueing a circuits job straight in the store, as the API's submit route does."""

from __future__ import annotations

import uuid

from orchestrator.spec import JobCreate
from orchestrator.store import repository as repo
from orchestrator.store.db import SessionFactory, session_scope


def store_circuits_job(factory: SessionFactory, spec: JobCreate, name: str = "t") -> str:
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
