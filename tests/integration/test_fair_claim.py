"""Planning is fair between tenants: a tenant that queued many jobs does not go first with all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(fresh_database: str) -> Iterator[SessionFactory]:
    engine = make_engine(fresh_database, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


def _queue(factory: SessionFactory, tenant: str, pool: str = "local-sv") -> str:
    job_id = str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.create_job(
            session,
            job_id=job_id,
            name=f"{tenant} job",
            kind="circuits",
            pool=pool,
            spec={},
            result_type="expectation",
            observables=1,
            bindings_total=1,
            tenant=tenant,
        )
    return job_id


def _claim(factory: SessionFactory) -> str | None:
    """Claim the next job and mark it RUNNING, as planning does; its tenant."""
    with session_scope(factory) as session:
        job = repo.claim_queued_job(session)
        if job is None:
            return None
        repo.set_status(session, job, JobStatus.RUNNING, "planned", now=job.created_at)
        return job.tenant


def test_tenants_take_turns_whatever_order_they_queued_in(factory: SessionFactory) -> None:
    for _ in range(4):
        _queue(factory, "greedy")
    _queue(factory, "patient")
    _queue(factory, "patient")
    order = [_claim(factory) for _ in range(6)]
    # greedy queued first: one each in turn while both have work, then greedy's rest
    assert order == ["greedy", "patient", "greedy", "patient", "greedy", "greedy"]
    assert _claim(factory) is None


def test_a_tenant_busy_on_one_pool_is_not_held_back_on_another(factory: SessionFactory) -> None:
    _queue(factory, "a", pool="local-dm")
    assert _claim(factory) == "a"  # a now runs a job on local-dm
    _queue(factory, "a")  # local-sv, older
    _queue(factory, "b")
    assert [_claim(factory), _claim(factory)] == ["a", "b"]


def test_oldest_first_among_equals(factory: SessionFactory) -> None:
    first = _queue(factory, "x")
    _queue(factory, "y")
    with session_scope(factory) as session:
        job = repo.claim_queued_job(session)
        assert job is not None and job.id == first
