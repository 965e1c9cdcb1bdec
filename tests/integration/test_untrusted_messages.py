"""Malformed Kafka messages sent straight to the topics: the agent dead-letters what it cannot
run (with the reason) and keeps working; the orchestrator drops what it cannot apply, counts
it, and keeps working. Real broker, real Postgres, real local simulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorch.config import Settings
from qorch.kafka import Producer
from tests.integration.test_agent import POOL, TopicReader, fragment, running
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture
def untrusting(settings: Settings) -> Settings:
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
    results = TopicReader(untrusting, untrusting.topic("results"), pb.FragmentResult)
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

            letters = dict(dlq.wait_for(lambda items: len(items) >= 3, "three dead letters"))
            assert "not a Fragment" in letters["junk"].reason
            assert "without job_id" in letters["no-job"].reason
            assert "at most 4096" in letters["f-huge"].reason
            done = results.wait_for(
                lambda items: any(r.fragment_id == "f-good" for _, r in items), "f-good's result"
            )
            assert any(r.WhichOneof("outcome") == "success" for _, r in done)
            assert agent.dead_letters >= 3
            assert thread.is_alive()
    finally:
        dlq.close()
        results.close()


def test_the_orchestrator_drops_and_counts_what_it_cannot_apply(
    untrusting: Settings, producer: Producer
) -> None:
    orchestrator = Orchestrator(untrusting)
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    thread.start()
    try:
        results, beats = untrusting.topic("results"), untrusting.topic("heartbeats")
        far_future = Timestamp(seconds=2**62)
        assert producer.send_and_wait(results, "junk", b"\xff\xfe not a result")
        unknown = pb.FragmentResult(fragment_id="nope" * 30, job_id="x" * 500, node_id="n")
        assert producer.send_and_wait(results, "x", unknown)
        assert producer.send_and_wait(beats, "junk", b"\xff\xfe not a heartbeat")
        assert producer.send_and_wait(beats, "long", nodes_pb.Heartbeat(node_id="n" * 1000))
        impossible = nodes_pb.Heartbeat(node_id="time-traveller", sent_at=far_future)
        assert producer.send_and_wait(beats, "time", impossible)
        counters = orchestrator.counters
        wait_until(
            lambda: (
                counters.get("results_malformed", 0) >= 1
                and counters.get("results_unknown", 0) >= 1
                and counters.get("heartbeats_malformed", 0) >= 1
                and counters.get("heartbeats_rejected", 0) >= 2
            ),
            timeout=DEADLINE_S,
            what="every bad message counted",
        )
        assert thread.is_alive()
        # and it still records good heartbeats
        good = nodes_pb.Heartbeat(node_id="node-fine", pool=POOL, state=nodes_pb.NODE_STATE_RUNNING)
        good.sent_at.GetCurrentTime()
        good.started_at.GetCurrentTime()
        assert producer.send_and_wait(beats, "node-fine", good)
        wait_until(
            lambda: _known(untrusting),
            timeout=DEADLINE_S,
            what="the good heartbeat stored",
        )
    finally:
        orchestrator.shutdown()
        thread.join(DEADLINE_S)
    assert not thread.is_alive()


def _known(settings: Settings) -> bool:
    from orchestrator.store import repository as repo
    from orchestrator.store.db import make_engine, make_session_factory, session_scope

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return any(n.id == "node-fine" for n in repo.list_nodes(session, POOL))
    finally:
        engine.dispose()
