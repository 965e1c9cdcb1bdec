"""Malformed Kafka messages sent straight to the topics: the agent dead-letters what it cannot
run (with the reason) and keeps working; the orchestrator drops what it cannot apply, counts
it, and keeps working. Real broker, real Postgres, real local simulator."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, text

from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus
from qorchestra.signing import NodeSigner
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Fragment
from tests.support.agents import POOL, TopicReader, fragment, running
from tests.support.metrics import CounterReading
from tests.support.stored_jobs import store_circuits_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture
def quiet_database(database_url: str) -> None:
    """End the jobs earlier test modules left queued or running in the shared database: an
    orchestrator started here would plan, top up and dispatch them before this test's job
    (about 30 s a test in a full run)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE jobs SET status = 'CANCELLED', finished_at = now() "
                    "WHERE status IN ('QUEUED', 'RUNNING')"
                )
            )
            conn.execute(text("DELETE FROM outbox"))
    finally:
        engine.dispose()


@pytest.fixture
def untrusting(settings: Settings, quiet_database: None) -> Settings:
    """Settings whose agents take fragments of at most 4 KiB."""
    return settings.model_copy(update={"max_fragment_bytes": 4096, "node_id": "node-u"})


@pytest.fixture
def producer(untrusting: Settings) -> Iterator[Producer]:
    p = Producer(untrusting)
    yield p
    p.close()


def test_the_agent_dead_letters_bad_fragments_with_the_reason_and_keeps_working(
    untrusting: Settings, producer: Producer
) -> None:
    dlq = TopicReader(untrusting, untrusting.topic("fragments.dlq"), pb.DeadLetter)
    results = TopicReader(untrusting, untrusting.topic("results"), pb.FragmentResult, signed=True)
    topic = untrusting.fragments_topic(POOL)
    huge = fragment("f-huge", "job-u", pb.RESULT_KIND_PROBABILITIES)
    huge.program += "// " + "x" * 8000 + "\n"
    agent = NodeAgent(untrusting, POOL)
    try:
        with running(agent) as thread:
            assert producer.send_and_wait(topic, "junk", b"\x08\x96\x01\xff\xff garbage")
            assert producer.send_and_wait(topic, "no-job", pb.Fragment(fragment_id="no-job"))
            assert producer.send_and_wait(topic, "f-huge", huge)
            assert producer.send_and_wait(topic, "empty", b"")
            good = fragment("f-good", "job-u", pb.RESULT_KIND_PROBABILITIES)
            assert producer.send_and_wait(topic, "f-good", good)

            letters = dict(dlq.wait_for(lambda items: len(items) >= 4, "four dead letters"))
            assert "not a Fragment" in letters["junk"].reason
            assert "without job_id" in letters["no-job"].reason
            assert "at most 4096" in letters["f-huge"].reason
            # an empty value decodes as a Fragment with nothing in it
            assert "without fragment_id, job_id" in letters["empty"].reason
            done = results.wait_for(
                lambda items: any(r.fragment_id == "f-good" for _, r in items), "f-good's result"
            )
            assert any(r.WhichOneof("outcome") == "success" for _, r in done)
            assert agent.dead_letters >= 4
            assert thread.is_alive()
    finally:
        dlq.close()
        results.close()


def test_the_orchestrator_drops_and_counts_what_it_cannot_apply(
    untrusting: Settings, producer: Producer
) -> None:
    """Signed by an enrolled agent (what is not signed is refused before it is read:
    tests/integration/test_signed_messages.py), and still impossible: dropped and counted."""
    agent = NodeSigner(untrusting.node_credential.get_secret_value())
    orchestrator = Orchestrator(untrusting)
    before = CounterReading()
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    thread.start()
    try:
        results, beats = untrusting.topic("results"), untrusting.topic("heartbeats")
        far_future = Timestamp(seconds=2**62)
        assert producer.send_and_wait(results, "junk", b"\xff\xfe not a result")
        unknown = pb.FragmentResult(fragment_id="nope" * 30, job_id="x" * 500, node_id="n")
        assert producer.send_and_wait(results, "x", agent.seal(unknown))
        assert producer.send_and_wait(beats, "junk", b"\xff\xfe not a heartbeat")
        long = nodes_pb.Heartbeat(node_id="n" * 1000, pool=POOL)
        assert producer.send_and_wait(beats, "long", agent.seal(long))
        impossible = nodes_pb.Heartbeat(node_id="time-traveller", pool=POOL, sent_at=far_future)
        assert producer.send_and_wait(beats, "time", agent.seal(impossible))
        # a possible time, but years ahead: kept, it would pin node-fine's row (a row keeps
        # only heartbeats at least as new as its own), and the good one below would be ignored
        pinning = nodes_pb.Heartbeat(node_id="node-fine", pool=POOL)
        pinning.sent_at.FromDatetime(datetime(9999, 12, 31, tzinfo=UTC))
        pinning.started_at.GetCurrentTime()
        assert producer.send_and_wait(beats, "node-fine", agent.seal(pinning))
        wait_until(
            lambda: (
                before.grew("qorch_bus_rejected_total", topic="results", reason="malformed") >= 1
                and before.grew("qorch_results_total", outcome="unknown") >= 1
                and before.grew("qorch_bus_rejected_total", topic="heartbeats", reason="malformed")
                >= 1
                and before.grew("qorch_heartbeats_total", outcome="rejected") >= 3
            ),
            timeout=DEADLINE_S,
            what="every bad message counted",
        )
        assert thread.is_alive()
        # and it still records good heartbeats
        good = nodes_pb.Heartbeat(node_id="node-fine", pool=POOL, state=nodes_pb.NODE_STATE_RUNNING)
        good.sent_at.GetCurrentTime()
        good.started_at.GetCurrentTime()
        assert producer.send_and_wait(beats, "node-fine", agent.seal(good))
        stored = wait_until(
            lambda: _known(untrusting),
            timeout=DEADLINE_S,
            what="the good heartbeat stored",
        )
        assert stored <= datetime.now(UTC) + timedelta(minutes=5)
    finally:
        orchestrator.shutdown()
        thread.join(DEADLINE_S)
    assert not thread.is_alive()


def _known(settings: Settings) -> datetime | None:
    """When node-fine's last heartbeat was sent, as its row says; None without a row."""
    from qorchestra.store import repository as repo
    from qorchestra.store.db import make_engine, make_session_factory, session_scope

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            nodes = repo.list_nodes(session, POOL)
            return next((n.last_heartbeat_at for n in nodes if n.id == "node-fine"), None)
    finally:
        engine.dispose()


def test_results_for_unknown_fragments_of_a_known_job_are_counted_and_leave_it_alone(
    untrusting: Settings, producer: Producer
) -> None:
    engine = make_engine(untrusting.database_url, pool_size=1)
    factory = make_session_factory(engine)
    job_id = store_circuits_job(factory, CircuitsJob.model_validate(demo_job(2)))
    orchestrator = Orchestrator(untrusting)
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    thread.start()
    try:
        # planned and dispatched (no agent takes its fragments, so nothing else happens to it)
        before = wait_until(
            lambda: (
                (state := _state(factory, job_id))["fragments"]
                and all(f[0] == repo.FragmentStatus.DISPATCHED for f in state["fragment_states"])
                and state
            ),
            timeout=DEADLINE_S,
            what="the job's fragments dispatched",
        )
        assert before["status"] == JobStatus.RUNNING
        results = untrusting.topic("results")
        stranger = pb.FragmentResult(
            fragment_id=str(uuid.uuid4()), job_id=job_id, node_id="n", attempt=1
        )
        stranger.success.SetInParent()
        # a fragment of the job, named under another job: not the job's either
        misnamed = pb.FragmentResult(
            fragment_id=before["fragments"][0], job_id=str(uuid.uuid4()), node_id="n", attempt=1
        )
        misnamed.failure.CopyFrom(pb.FragmentFailure(error="boom", retryable=False))
        counted = CounterReading()
        agent = NodeSigner(untrusting.node_credential.get_secret_value())
        assert producer.send_and_wait(results, job_id, agent.seal(stranger))
        assert producer.send_and_wait(results, misnamed.job_id, agent.seal(misnamed))
        wait_until(
            lambda: counted.grew("qorch_results_total", outcome="unknown") >= 2,
            timeout=DEADLINE_S,
            what="both results counted as unknown",
        )
        assert thread.is_alive()
        # had either been applied, the job would have an event, a fragment done, or have failed
        assert _state(factory, job_id) == before
    finally:
        orchestrator.shutdown()
        thread.join(DEADLINE_S)
        engine.dispose()
    assert not thread.is_alive()


def _state(factory: SessionFactory, job_id: str) -> dict[str, Any]:
    """What a result applied to the job would change: its status, events, counts, fragments."""
    with session_scope(factory) as session:
        job = repo.get_job(session, job_id)
        fragments = session.scalars(
            select(Fragment).where(Fragment.job_id == job_id).order_by(Fragment.id)
        ).all()
        return {
            "status": job.status,
            # (the pool watch may add ``waiting``: no agent serves this job's pool)
            "events": [
                e.type
                for e in repo.events_after(session, job_id, 0)
                if e.type not in ("waiting", "resumed")
            ],
            "done": (job.fragments_done, job.bindings_done),
            "error": job.error,
            "fragments": [f.id for f in fragments],
            "fragment_states": [(f.status, f.attempt, f.result is None) for f in fragments],
        }


def test_a_result_tops_up_its_window_at_once_not_at_the_next_poll(
    settings: Settings, quiet_database: None
) -> None:
    """Six one-binding fragments, at most two in flight, and a poll interval longer than the
    deadline: the job can only finish in time if each result wakes the dispatch loop to
    write and publish the next fragment."""
    slow = settings.model_copy(
        update={"poll_interval_s": 3600.0, "max_inflight_per_job": 2, "fragment_bindings": 1}
    )
    engine = make_engine(slow.database_url, pool_size=1)
    factory = make_session_factory(engine)
    job_id = store_circuits_job(factory, CircuitsJob.model_validate(demo_job(6)))
    orchestrator = Orchestrator(slow)
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    try:
        with running(NodeAgent(slow, POOL)):
            thread.start()  # its first pass plans the job (and any other queued one)
            done = wait_until(
                lambda: (s := _state(factory, job_id))["status"] == JobStatus.SUCCEEDED and s,
                timeout=DEADLINE_S,
                what="the job finished, window by window",
            )
        assert done["done"] == (6, 6)
        assert len(done["fragments"]) == 6
    finally:
        orchestrator.shutdown()
        thread.join(DEADLINE_S)
        engine.dispose()
    assert not thread.is_alive()
