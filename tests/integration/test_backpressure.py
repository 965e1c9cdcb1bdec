"""Backpressure: a 100,000-binding job is planned as a stream within the in-flight caps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from orchestrator.dispatch import plan_next_job
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Fragment, OutboxMessage
from tests.support.settings import make_settings
from tests.support.stored_jobs import count_success, store_circuits_job

pytestmark = pytest.mark.integration

PROGRAM = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[0];"


@pytest.fixture
def factory(fresh_database: str) -> Iterator[SessionFactory]:
    engine = make_engine(fresh_database)
    yield make_session_factory(engine)
    engine.dispose()


def submit(factory: SessionFactory, bindings: int) -> str:
    spec = CircuitsJob.model_validate(
        {
            "result": {"type": "expectation", "observables": ["ZI"]},
            "programs": [
                {"source": PROGRAM, "bindings": [{"a": i * 1e-5} for i in range(bindings)]}
            ],
        }
    )
    return store_circuits_job(factory, spec, name="big")


def rows(factory: SessionFactory, job_id: str) -> dict[str, Any]:
    """The job's fragment rows by status, its outbox rows and its progress."""
    with factory() as session:
        by_status = dict(
            session.execute(
                select(Fragment.status, func.count())
                .where(Fragment.job_id == job_id)
                .group_by(Fragment.status)
            ).all()
        )
        outbox = session.execute(
            select(func.count()).where(OutboxMessage.job_id == job_id)
        ).scalar_one()
        job = repo.get_job(session, job_id)
        return {
            "written": sum(by_status.values()),
            "open": by_status.get("pending", 0) + by_status.get("dispatched", 0),
            "outbox": outbox,
            "total": job.fragments_total,
            "done": job.fragments_done,
            "status": job.status,
        }


def answer_all(factory: SessionFactory, job_id: str, settings: Any) -> int:
    """Apply a success result to every open fragment of the job; returns how many."""
    with factory() as session:
        open_fragments = list(
            session.execute(
                select(Fragment).where(
                    Fragment.job_id == job_id, Fragment.status.in_(["pending", "dispatched"])
                )
            ).scalars()
        )
    for fragment in open_fragments:
        values = pb.BindingResult(expectations=pb.Expectations(values=[1.0]))
        count_success(factory, settings, job_id, fragment.id, [values] * fragment.binding_count)
    return len(open_fragments)


def test_a_huge_job_is_planned_as_a_stream_within_the_caps(
    factory: SessionFactory, database_url: str
) -> None:
    settings = make_settings(
        database_url=database_url,
        fragment_bindings=16,
        max_inflight_per_job=8,
        max_inflight_per_pool=12,
    )
    big = submit(factory, 100_000)
    assert plan_next_job(factory, settings) is not None
    state = rows(factory, big)
    # the whole job is counted, only one window is written
    assert state == {
        "written": 8,
        "open": 8,
        "outbox": 8,
        "total": 6250,
        "done": 0,
        "status": "RUNNING",
    }

    small = submit(factory, 64)  # 4 fragments: the pool has room for 4 more
    assert plan_next_job(factory, settings) is not None
    assert rows(factory, small)["written"] == 4
    plan_next_job(factory, settings)  # nothing answered: nothing more is written
    assert rows(factory, big)["written"] == 8

    # as results come in, the job is topped up window by window; never more than the cap open
    for round_ in range(1, 6):
        assert answer_all(factory, big, settings) == 8
        plan_next_job(factory, settings)
        state = rows(factory, big)
        assert state["done"] == 8 * round_
        assert state["open"] == 8 and state["written"] == 8 * (round_ + 1)

    # the small job finishes; its room goes to the big one, still within the job cap
    assert answer_all(factory, small, settings) == 4
    assert rows(factory, small)["status"] == "SUCCEEDED"
    plan_next_job(factory, settings)
    assert rows(factory, big)["open"] == 8

    with session_scope(factory) as session:
        job = repo.lock_job(session, big)
        repo.set_status(session, job, JobStatus.CANCELLED, "test over", now=job.created_at)
    plan_next_job(factory, settings)  # a cancelled job is not topped up
    assert rows(factory, big)["written"] == 48
