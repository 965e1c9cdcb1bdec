"""Cancelling another tenant's job never locks (nor waits for) its row: the tenant is part of
the locking query, and the answer is NotFound, as for a job that does not exist. Real
Postgres."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from qorch.samples import demo_job
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope

pytestmark = pytest.mark.integration

OWNER, OTHER = "lock-owner", "lock-other"


@pytest.fixture
def job_id(factory: SessionFactory) -> Iterator[str]:
    """A QUEUED circuits job of tenant OWNER, cancelled afterwards (other modules' planners
    share the database)."""
    job_id = _store(factory)
    yield job_id
    with session_scope(factory) as session:
        job = repo.lock_job(session, job_id)
        repo.set_status(session, job, JobStatus.CANCELLED, "test over", now=datetime.now(UTC))


def _store(factory: SessionFactory) -> str:
    spec = CircuitsJob.model_validate(demo_job(2))
    job_id = str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.ensure_tenant(session, OWNER)
        repo.create_job(
            session,
            job_id=job_id,
            name="locked",
            kind="circuits",
            pool=spec.pool,
            spec=spec.model_dump(mode="json"),
            result_type=spec.result.type.value,
            observables=len(spec.result.observables),
            bindings_total=2,
            tenant=OWNER,
        )
    return job_id


def _row_lock_free(factory: SessionFactory, job_id: str) -> bool:
    """Whether nobody holds the job's row lock (asked from a connection of its own)."""
    with factory() as session, session.begin():
        try:
            session.execute(
                text("SELECT id FROM jobs WHERE id = :id FOR UPDATE NOWAIT"), {"id": job_id}
            )
        except OperationalError as exc:
            assert "could not obtain lock" in str(exc.orig)
            return False
        return True


def test_another_tenants_lookup_leaves_the_row_unlocked(
    factory: SessionFactory, job_id: str
) -> None:
    with factory() as other, other.begin():
        with pytest.raises(repo.NotFound, match=f"job {job_id} not found"):
            repo.lock_job(other, job_id, OTHER)
        # its transaction still open: had it locked the row, the row would still be locked
        assert _row_lock_free(factory, job_id)
    with factory() as owner, owner.begin():
        repo.lock_job(owner, job_id, OWNER)
        assert not _row_lock_free(factory, job_id)  # the check above can see a lock


def test_another_tenant_does_not_wait_for_the_owners_lock(
    factory: SessionFactory, job_id: str
) -> None:
    with factory() as owner, owner.begin():
        repo.lock_job(owner, job_id, OWNER)  # held, as by a cancel or a result being applied
        with factory() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            started = time.monotonic()
            with pytest.raises(repo.NotFound):
                repo.lock_job(other, job_id, OTHER)
            assert time.monotonic() - started < 1.0  # answered at once, not after the timeout
        with factory() as admin, admin.begin():  # no tenant (the orchestrator, an admin): waits
            admin.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                repo.lock_job(admin, job_id)
