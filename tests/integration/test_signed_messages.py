"""Proof of origin on the bus (issue 14, DESIGN.md "Trust"): a Kafka client that can read and
write every topic, as anyone can on the embedded broker, cannot make a job count a forged
value, fail it, pin a node's row, or end a watcher's stream. Each refusal is counted in
``qorch_bus_rejected_total`` with its reason. Real broker, real Postgres, the real orchestrator
and the API's real event hub.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer as RawProducer
from sqlalchemy import text

from api.event_hub import EventHub
from orchestrator.service import Orchestrator
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import jobs_pb2, signed_pb2
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import Producer, client_config
from qorchestra.signing import ControlPlaneSigner, NodeSigner, new_node_credential
from qorchestra.store import credentials
from qorchestra.store import repository as repo
from qorchestra.store.credentials import load_control_plane_signer
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Node
from tests.support.agents import TopicReader
from tests.support.metrics import CounterReading
from tests.support.stored_jobs import store_circuits_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
REJECTED = "qorch_bus_rejected_total"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Two bindings a fragment: the jobs here have two fragments."""
    return settings.model_copy(update={"fragment_bindings": 2})


@pytest.fixture
def factory(settings: Settings) -> Iterator[SessionFactory]:
    engine = make_engine(settings.database_url, pool_size=2)
    with engine.begin() as conn:  # jobs other modules left running would be planned first
        conn.execute(
            text(
                "UPDATE jobs SET status = 'CANCELLED', finished_at = now() "
                "WHERE status IN ('QUEUED', 'RUNNING')"
            )
        )
        conn.execute(text("DELETE FROM outbox"))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    p = Producer(settings)
    yield p
    p.close()


@pytest.fixture
def orchestrator(settings: Settings) -> Iterator[Orchestrator]:
    orchestrator = Orchestrator(settings)
    thread = threading.Thread(target=orchestrator.run, name="orchestrator", daemon=True)
    thread.start()
    yield orchestrator
    orchestrator.shutdown()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()


def enroll(factory: SessionFactory, pool: str) -> NodeSigner:
    """The signer of a credential an admin enrolled for ``pool``."""
    with session_scope(factory) as session:
        _row, token = credentials.enroll_node(session, pool, "test")
    return NodeSigner(token)


def revoke(factory: SessionFactory, signer: NodeSigner) -> None:
    with session_scope(factory) as session:
        credentials.revoke_node_credential(session, signer.credential_id, now=datetime.now(UTC))


def job_state(factory: SessionFactory, job_id: str) -> dict[str, Any]:
    """Everything a counted result or failure would change."""
    with session_scope(factory) as session:
        job = repo.get_job(session, job_id)
        fragments = repo.fragment_runs(session, job_id)
        return {
            "status": job.status,
            # (the pool watch may add ``waiting``: no agent serves these jobs' pool)
            "events": [
                e.type
                for e in repo.events_after(session, job_id, 0)
                if e.type not in ("waiting", "resumed")
            ],
            "done": (job.fragments_done, job.bindings_done),
            "redispatches": job.redispatches,
            "result": job.result,
            "runs": fragments,
        }


def success(fragment: pb.Fragment, value: float, nonce: str | None = None) -> pb.FragmentResult:
    """A success of ``fragment`` with ``value`` for every expectation, answering ``nonce``
    (default: the fragment's own, as read from its topic)."""
    return pb.FragmentResult(
        fragment_id=fragment.fragment_id,
        job_id=fragment.job_id,
        attempt=fragment.attempt,
        node_id="forger",
        nonce=fragment.nonce if nonce is None else nonce,
        success=pb.FragmentSuccess(
            results=[
                pb.BindingResult(
                    expectations=pb.Expectations(values=[value] * len(fragment.observables))
                )
                for _ in fragment.bindings
            ]
        ),
    )


def tampered(sealed: bytes) -> bytes:
    """A signed message whose body was changed after signing."""
    envelope = signed_pb2.Signed.FromString(sealed)
    result = pb.FragmentResult.FromString(envelope.body)
    result.success.results[0].expectations.values[0] = 0.25
    envelope.body = result.SerializeToString()
    return envelope.SerializeToString()


def dispatched(settings: Settings, factory: SessionFactory) -> tuple[str, list[pb.Fragment]]:
    """A job of two fragments, planned and dispatched by the running orchestrator (no agent
    takes them), and its fragment messages as anyone reading the pool's topic sees them."""
    spec = CircuitsJob.model_validate({**demo_job(4), "shots": 0})
    job_id = store_circuits_job(factory, spec)
    reader = TopicReader(settings, settings.fragments_topic("local-sv"), pb.Fragment)
    try:
        items = reader.wait_for(
            lambda got: len([f for _, f in got if f.job_id == job_id]) >= 2,
            "the job's fragments on their topic",
            timeout=DEADLINE_S,
        )
    finally:
        reader.close()
    return job_id, [f for _, f in items if f.job_id == job_id]


def test_results_count_only_from_an_enrolled_agent_of_the_pool_answering_a_dispatch(
    settings: Settings, factory: SessionFactory, producer: Producer, orchestrator: Orchestrator
) -> None:
    job_id, (first, second) = dispatched(settings, factory)
    assert first.nonce and first.nonce != second.nonce
    before = job_state(factory, job_id)
    results = settings.topic("results")
    agent = enroll(factory, "local-sv")
    other_pool = enroll(factory, "local-dm")
    stranger = NodeSigner(new_node_credential().token)  # well formed, never enrolled
    revoked = enroll(factory, "local-sv")
    revoke(factory, revoked)  # revoked before it signs anything: nothing it signs counts

    counted = CounterReading()
    forgeries: list[tuple[bytes, str]] = [
        (success(first, 42.0).SerializeToString(), "unsigned"),  # the probe: no envelope
        (
            signed_pb2.Signed(body=success(first, 0.5).SerializeToString()).SerializeToString(),
            "unsigned",
        ),
        (stranger.seal(success(first, 0.5)), "unknown_signer"),
        (other_pool.seal(success(first, 0.5)), "wrong_pool"),
        (agent.seal(success(first, 0.5, nonce="")), "wrong_nonce"),
        (agent.seal(success(first, 0.5, nonce=second.nonce)), "wrong_nonce"),
        (tampered(agent.seal(success(first, 0.5))), "bad_signature"),
        (revoked.seal(success(first, 0.5)), "revoked"),
    ]
    for value, _ in forgeries:
        assert producer.send_and_wait(results, job_id, value)
    # a failure in the name of the second fragment, for an attempt never sent
    next_attempt = pb.FragmentResult()
    next_attempt.CopyFrom(success(second, 0.5))
    next_attempt.attempt = 2
    next_attempt.failure.CopyFrom(pb.FragmentFailure(error="forged", retryable=False))
    assert producer.send_and_wait(results, job_id, agent.seal(next_attempt))

    expected: dict[str, int] = {}
    for _, reason in forgeries:
        expected[reason] = expected.get(reason, 0) + 1
    expected["wrong_nonce"] += 1
    wait_until(
        lambda: all(
            counted.grew(REJECTED, topic="results", reason=r) >= n for r, n in expected.items()
        ),
        timeout=DEADLINE_S,
        what=f"every forgery refused: {expected}",
    )
    assert job_state(factory, job_id) == before  # not a value, event or retry

    # the genuine answer of the enrolled agent counts: the same path, nothing else differs
    assert producer.send_and_wait(results, job_id, agent.seal(success(first, 0.5)))
    wait_until(
        lambda: job_state(factory, job_id)["done"][0] == 1,
        timeout=DEADLINE_S,
        what="the agent's result counted",
    )

    # revoked, its very next message is refused, though it answers a real dispatch
    revoke(factory, agent)
    assert producer.send_and_wait(results, job_id, agent.seal(success(second, 0.5)))
    wait_until(
        lambda: counted.grew(REJECTED, topic="results", reason="revoked") >= 2,
        timeout=DEADLINE_S,
        what="the revoked agent's result refused",
    )
    assert job_state(factory, job_id)["done"][0] == 1


def _node(factory: SessionFactory, node_id: str) -> Node | None:
    with session_scope(factory) as session:
        node = session.get(Node, node_id)
        if node is not None:
            session.expunge(node)
        return node


def beat(node_id: str, pool: str = "local-sv") -> nodes_pb.Heartbeat:
    heartbeat = nodes_pb.Heartbeat(node_id=node_id, pool=pool, state=nodes_pb.NODE_STATE_RUNNING)
    heartbeat.sent_at.GetCurrentTime()
    heartbeat.started_at.GetCurrentTime()
    return heartbeat


def test_heartbeats_count_only_from_the_credential_that_speaks_for_the_node(
    settings: Settings, factory: SessionFactory, producer: Producer, orchestrator: Orchestrator
) -> None:
    beats = settings.topic("heartbeats")
    node_id = f"node-{uuid.uuid4().hex[:8]}"
    first = enroll(factory, "local-sv")
    second = enroll(factory, "local-sv")
    other_pool = enroll(factory, "local-dm")
    counted = CounterReading()

    def refused(reason: str, n: int = 1) -> Callable[[], bool]:
        return lambda: counted.grew(REJECTED, topic="heartbeats", reason=reason) >= n

    # unsigned, and a year-9999 heartbeat that would pin the row (a row keeps only newer
    # heartbeats): neither is read
    pinning = beat(node_id)
    pinning.sent_at.FromDatetime(datetime(9999, 12, 31, tzinfo=UTC))
    assert producer.send_and_wait(beats, node_id, pinning)
    assert producer.send_and_wait(beats, node_id, other_pool.seal(beat(node_id)))
    wait_until(refused("unsigned"), timeout=DEADLINE_S, what="the unsigned heartbeat refused")
    wait_until(refused("wrong_pool"), timeout=DEADLINE_S, what="the other pool's refused")
    assert _node(factory, node_id) is None

    assert producer.send_and_wait(beats, node_id, first.seal(beat(node_id)))
    row = wait_until(lambda: _node(factory, node_id), timeout=DEADLINE_S, what="the node's row")
    assert row.credential_id == first.credential_id

    # another enrolled agent cannot speak for the node while its credential is valid ...
    assert producer.send_and_wait(beats, node_id, second.seal(beat(node_id)))
    wait_until(refused("node_taken"), timeout=DEADLINE_S, what="the impersonation refused")
    assert _node(factory, node_id).credential_id == first.credential_id  # type: ignore[union-attr]
    # ... and takes the node over once it is revoked (an agent enrolled again)
    revoke(factory, first)
    assert producer.send_and_wait(beats, node_id, second.seal(beat(node_id)))
    wait_until(
        lambda: (
            (n := _node(factory, node_id)) is not None and n.credential_id == second.credential_id
        ),
        timeout=DEADLINE_S,
        what="the node taken over by its new credential",
    )


def test_only_events_the_control_plane_signed_reach_watchers(
    settings: Settings, factory: SessionFactory, producer: Producer
) -> None:
    """The probe of issue 14: an event with the next seq and status SUCCEEDED ended a watcher's
    stream while the job ran; a non-UTF-8 key made the hub rebuild itself every second."""
    signer = load_control_plane_signer(factory)
    job_id = store_circuits_job(factory, CircuitsJob.model_validate(demo_job(2)))
    topic = settings.topic("events")

    def event(seq: int, status: int) -> jobs_pb2.JobEvent:
        return jobs_pb2.JobEvent(job_id=job_id, seq=seq, type="succeeded", status=status)  # type: ignore[arg-type]

    forged = event(2, jobs_pb2.JOB_STATUS_SUCCEEDED)
    wrong_key = ControlPlaneSigner(signer.key_id, secrets.token_bytes(32))
    counted = CounterReading()

    async def watch() -> list[jobs_pb2.JobEvent]:
        hub = EventHub(settings, signer)
        subscription = hub.watch(job_id)
        hub.start(asyncio.get_running_loop())
        try:
            for value in (
                forged.SerializeToString(),
                signed_pb2.Signed(body=forged.SerializeToString()).SerializeToString(),
                wrong_key.seal(forged),
            ):
                assert await asyncio.to_thread(producer.send_and_wait, topic, job_id, value)
            raw = RawProducer(client_config(settings))  # a key that is not UTF-8
            raw.produce(topic, key=b"\xff\xfe", value=b"\xff\xfe")
            assert await asyncio.to_thread(raw.flush, DEADLINE_S) == 0
            # then the control plane's own event: when it arrives, the forgeries on the job's
            # partition were all read
            genuine = event(2, jobs_pb2.JOB_STATUS_RUNNING)
            assert await asyncio.to_thread(
                producer.send_and_wait, topic, job_id, signer.seal(genuine)
            )
            await asyncio.wait_for(subscription.wake.wait(), DEADLINE_S)
            pushed, _ = subscription.take()
            # the message with the bad key went to a partition of its own, which the hub may
            # read after the job's
            await asyncio.to_thread(
                wait_until,
                lambda: counted.grew(REJECTED, topic="events", reason="malformed") >= 1,
                timeout=DEADLINE_S,
                what="the message with a key that is not UTF-8 read",
            )
            return pushed
        finally:
            hub.unwatch(subscription)
            await asyncio.to_thread(hub.stop)

    pushed = asyncio.run(watch())
    assert [(e.seq, e.status) for e in pushed] == [(2, jobs_pb2.JOB_STATUS_RUNNING)]
    # the hub read each forgery once (it did not fail and start over from the first offset)
    assert counted.grew(REJECTED, topic="events", reason="unsigned") == 2
    assert counted.grew(REJECTED, topic="events", reason="bad_signature") == 1
    assert counted.grew(REJECTED, topic="events", reason="malformed") == 1
