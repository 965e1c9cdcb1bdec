"""A job on a pool that no live agent serves says so, its attempts' clocks stand still, and it
succeeds when an agent starts later; with ``max_queue_s`` it fails with the reason instead
(issue 15). Real Postgres (a database of its own: no other test's agents), real broker, the
real orchestrator and agent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from api.schemas import JobPublic
from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import ensure_topics
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Fragment
from qorchestra.store.pools import pool_overview
from tests.support.agents import running
from tests.support.settings import enrolled, make_settings
from tests.support.stored_jobs import store_circuits_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
POOL = "local-dm"


@pytest.fixture
def settings(fresh_database: str, kafka_bootstrap: str) -> Settings:
    """Attempts of four seconds (an agent's group join takes one or two), one attempt a
    fragment: without the held clock, a job whose pool has no agent fails within seconds."""
    settings = make_settings(
        database_url=fresh_database,
        kafka_bootstrap=kafka_bootstrap,
        fragment_timeout_s=4.0,
        max_attempts=1,
        node_offline_after_s=3.0,
        fragment_bindings=2,
    )
    ensure_topics(settings, ["local-sv", POOL])
    return enrolled(settings, POOL)


@pytest.fixture
def factory(settings: Settings) -> Iterator[SessionFactory]:
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def orchestrator(settings: Settings) -> Iterator[Orchestrator]:
    orchestrator = Orchestrator(settings)
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    thread.start()
    yield orchestrator
    orchestrator.shutdown()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()


def submit(factory: SessionFactory, max_queue_s: float | None = None) -> str:
    spec = CircuitsJob.model_validate({**demo_job(4), "pool": POOL})
    return store_circuits_job(factory, spec, max_queue_s=max_queue_s)


def state(factory: SessionFactory, job_id: str) -> dict[str, Any]:
    with session_scope(factory) as session:
        job = repo.get_job(session, job_id)
        fragments = session.scalars(select(Fragment).where(Fragment.job_id == job_id)).all()
        return {
            "job": JobPublic.of(job, datetime.now(UTC)),
            "events": [(e.type, e.message) for e in repo.events_after(session, job_id, 0)],
            "attempts": sorted(f.attempt for f in fragments),
            "held": fragments
            and all(
                f.deadline_at is not None
                and f.dispatched_at is not None
                and f.deadline_at > f.dispatched_at + timedelta(seconds=9)
                for f in fragments
            ),
        }


def test_a_job_waits_for_an_agent_that_starts_late_and_then_succeeds(
    settings: Settings, factory: SessionFactory, orchestrator: Orchestrator
) -> None:
    job_id = submit(factory)
    waiting = wait_until(
        lambda: (s := state(factory, job_id))["job"].waiting and s,
        timeout=DEADLINE_S,
        what="the job marked waiting",
    )
    assert waiting["job"].status == "RUNNING"
    assert waiting["job"].waiting.startswith(f"waiting: no node agent serves pool {POOL} (since ")
    assert ("waiting", waiting["job"].waiting) in waiting["events"]
    with session_scope(factory) as session:
        [dm] = [
            p
            for p in pool_overview(session, settings.declared_pools(), datetime.now(UTC), 3.0)
            if p.name == POOL
        ]
    assert (dm.agents_live, dm.jobs_waiting, dm.credentials) == (0, 1, 1)
    assert dm.fragments_in_flight == 2 and dm.oldest_in_flight_at is not None

    # Two attempts' worth of time later, still the first attempt: the deadlines moved on.
    held = wait_until(
        lambda: (s := state(factory, job_id))["held"] and s,
        timeout=DEADLINE_S,
        what="the fragments' deadlines held",
    )
    assert held["job"].status == "RUNNING" and held["attempts"] == [1, 1]

    with running(NodeAgent(settings, POOL)):
        done = wait_until(
            lambda: (s := state(factory, job_id))["job"].status == "SUCCEEDED" and s,
            timeout=DEADLINE_S,
            what="the job done by the late agent",
        )
    kinds = [kind for kind, _ in done["events"]]
    # (a ``resumed`` event comes in between when the watch sees the agent before the end)
    assert kinds.index("waiting") < kinds.index("succeeded")
    assert done["job"].waiting is None
    assert done["attempts"] == [1, 1]  # never sent again: nothing timed out


def test_a_job_fails_with_the_reason_once_it_waited_longer_than_max_queue_s(
    factory: SessionFactory, orchestrator: Orchestrator
) -> None:
    job_id = submit(factory, max_queue_s=1.0)
    failed = wait_until(
        lambda: (s := state(factory, job_id))["job"].status == "FAILED" and s,
        timeout=DEADLINE_S,
        what="the job failed after max_queue_s",
    )
    assert f"for a node agent of pool {POOL}, longer than its max_queue_s of 1 s" in (
        failed["job"].error or ""
    )
