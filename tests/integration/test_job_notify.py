"""New jobs announced over Postgres NOTIFY wake a listening orchestrator. Real Postgres."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from qorch.samples import demo_job
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.notify import JobListener, announce_job, libpq_url
from tests.support.stored_jobs import store_circuits_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


class Calls:
    """Counts the listener's calls, thread-safely."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture
def factory(database_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(database_url, pool_size=1)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def listening(database_url: str) -> Iterator[tuple[JobListener, Calls]]:
    calls = Calls()
    listener = JobListener(database_url, calls).start()
    try:
        wait_until(lambda: calls.count >= 1, DEADLINE_S, what="the listener connected")
        yield listener, calls
    finally:
        listener.stop()


def test_a_stored_job_wakes_the_listener_once_it_commits(
    listening: tuple[JobListener, Calls], factory: SessionFactory
) -> None:
    listener, calls = listening
    store_circuits_job(factory, CircuitsJob.model_validate(demo_job(2)))

    wait_until(lambda: listener.received >= 1, DEADLINE_S, what="the job's notification")
    assert calls.count == 2  # the connection, then the job
    assert listener.received == 1


def test_a_rolled_back_announcement_is_never_delivered(
    listening: tuple[JobListener, Calls], factory: SessionFactory
) -> None:
    listener, _ = listening
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        announce_job(session)
        raise RuntimeError("the job's transaction fails")
    with session_scope(factory) as session:  # a marker sent after it
        announce_job(session)

    wait_until(lambda: listener.received >= 1, DEADLINE_S, what="the marker's notification")
    assert listener.received == 1


def test_the_listener_connects_with_the_services_url() -> None:
    url = "postgresql+psycopg://qorch:s3cret@db.internal:5433/qorch?sslmode=require"

    assert libpq_url(url) == "postgresql://qorch:s3cret@db.internal:5433/qorch?sslmode=require"
