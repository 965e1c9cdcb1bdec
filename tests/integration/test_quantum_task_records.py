"""The orchestrator's side of paid quantum tasks (issue 16, "never pay twice"), on the real
Postgres: a signed report of an attempt's tasks is checked like a result and recorded; each
report of the current attempt moves its deadline on; a fragment dispatched again carries the
recorded tasks; a job that ends unfinished has its tasks' cancel queued for the pool's agents;
fragments queued behind an agent that waits on its tasks keep still.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from orchestrator.dispatch import sweep_overdue
from orchestrator.pool_watch import watch_pools
from orchestrator.quantum_tasks import apply_signed_submitted, queue_cancels
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import ensure_topics
from qorchestra.lifecycle import JobStatus
from qorchestra.signing import NodeSigner, Rejected, Rejection, open_envelope
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Fragment, OutboxMessage, QuantumTaskRow
from tests.support.settings import enrolled, make_settings
from tests.support.stored_jobs import PROGRAM, fragments_of, plan_until, store_circuits_job

pytestmark = pytest.mark.integration

POOL = "aws-sv1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ACCOUNT = "arn:aws:braket:us-west-2:123456789012:quantum-task"


@pytest.fixture
def settings(fresh_database: str, kafka_bootstrap: str) -> Settings:
    """A database of its own (the sweeps read every job), two bindings a fragment, and a node
    credential of the QPU pool."""
    settings = make_settings(
        database_url=fresh_database,
        kafka_bootstrap=kafka_bootstrap,
        fragment_bindings=2,
        fragment_timeout_s=30.0,
    )
    ensure_topics(settings, [POOL])
    return enrolled(settings, POOL)


@pytest.fixture
def factory(settings: Settings) -> Iterator[SessionFactory]:
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def signer(settings: Settings) -> NodeSigner:
    return NodeSigner(settings.node_credential.get_secret_value())


def running_job(factory: SessionFactory, settings: Settings) -> tuple[str, list[Fragment]]:
    """A planned job of 4 bindings on the QPU pool, its two fragments dispatched."""
    spec = CircuitsJob.model_validate(
        {
            "pool": POOL,
            "shots": 10,
            "max_cost_usd": 10.0,
            "result": {"type": "counts"},
            "programs": [{"source": PROGRAM, "bindings": [{"a": i / 10} for i in range(4)]}],
        }
    )
    job_id = store_circuits_job(factory, spec)
    plan_until(factory, settings, job_id)
    with session_scope(factory) as session:
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id)))
        repo.mark_published(session, rows, now=datetime.now(UTC), timeout_s=1.0)
    return job_id, fragments_of(factory, job_id)


def task(index: int, generation: int = 1, status: str = "QUEUED", name: str = "") -> pb.QuantumTask:
    return pb.QuantumTask(
        index=index,
        arn=f"{ACCOUNT}/{name or 'task'}-{index}-{generation}",
        client_token=f"token-{index}-{generation}",
        generation=generation,
        status=status,
    )


def report(
    factory: SessionFactory,
    fragment: Fragment,
    tasks: list[pb.QuantumTask],
    attempt: int = 1,
    node: str = "node-a",
    nonce: str | None = None,
    device: str = SV1,
) -> pb.FragmentSubmitted:
    """A report of ``tasks`` for ``attempt`` of ``fragment``, with that attempt's nonce."""
    with session_scope(factory) as session:
        right = control_plane_signer(session).nonce(fragment.id, attempt)
    return pb.FragmentSubmitted(
        fragment_id=fragment.id,
        job_id=fragment.job_id,
        attempt=attempt,
        node_id=node,
        nonce=right if nonce is None else nonce,
        device_arn=device,
        tasks=tasks,
    )


def apply(
    factory: SessionFactory, settings: Settings, signer: NodeSigner, message: pb.FragmentSubmitted
) -> str:
    """Apply a report as the results loop does: from the signed bytes on the bus."""
    envelope = open_envelope(signer.seal(message))
    with session_scope(factory) as session:
        return apply_signed_submitted(session, envelope, settings).kind


def recorded(factory: SessionFactory, fragment_id: str) -> list[QuantumTaskRow]:
    with session_scope(factory) as session:
        rows = session.scalars(
            select(QuantumTaskRow)
            .where(QuantumTaskRow.fragment_id == fragment_id)
            .order_by(QuantumTaskRow.task_index, QuantumTaskRow.generation)
        ).all()
        session.expunge_all()
        return list(rows)


def fragment_row(factory: SessionFactory, fragment_id: str) -> Fragment:
    with session_scope(factory) as session:
        row = session.get(Fragment, fragment_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_report_is_recorded_and_keeps_its_attempt_alive(
    factory: SessionFactory, settings: Settings, signer: NodeSigner
) -> None:
    job_id, (first, second) = running_job(factory, settings)
    before = fragment_row(factory, first.id).deadline_at
    assert before is not None and before < datetime.now(UTC) + timedelta(seconds=2)

    assert apply(factory, settings, signer, report(factory, first, [task(0), task(1)])) == (
        "submitted"
    )

    rows = recorded(factory, first.id)
    assert [(r.task_index, r.arn, r.generation, r.attempt, r.status, r.node_id) for r in rows] == [
        (0, f"{ACCOUNT}/task-0-1", 1, 1, "QUEUED", "node-a"),
        (1, f"{ACCOUNT}/task-1-1", 1, 1, "QUEUED", "node-a"),
    ]
    assert {(r.job_id, r.device_arn, r.cancel_wanted_at) for r in rows} == {(job_id, SV1, None)}
    # the attempt's clock now runs on its tasks: a full fragment timeout from this report
    extended = fragment_row(factory, first.id).deadline_at
    assert extended is not None and extended > datetime.now(UTC) + timedelta(seconds=25)
    assert fragment_row(factory, second.id).deadline_at == second.deadline_at

    # the same tasks reported again while the agent waits: progress, state and node updated
    again = report(factory, first, [task(0, status="RUNNING"), task(1)], node="node-b")
    assert apply(factory, settings, signer, again) == "progress"
    assert [(r.status, r.node_id) for r in recorded(factory, first.id)] == [
        ("RUNNING", "node-b"),
        ("QUEUED", "node-b"),
    ]
    # past the deadline of its dispatch, the overdue sweep leaves it alone (not the other one)
    with session_scope(factory) as session:
        session.execute(
            update(Fragment)
            .where(Fragment.id == second.id)
            .values(deadline_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert [e.type for e in sweep_overdue(factory, settings)] == ["redispatched"]
    assert (fragment_row(factory, first.id).attempt, fragment_row(factory, second.id).attempt) == (
        1,
        2,
    )


def test_reports_that_do_not_hold_are_refused_and_change_nothing(
    factory: SessionFactory, settings: Settings, signer: NodeSigner
) -> None:
    _job_id, (first, second) = running_job(factory, settings)
    apply(factory, settings, signer, report(factory, second, [task(0, name="theirs")]))

    refusals = {
        "another attempt's nonce": report(factory, first, [task(0)], nonce="0" * 32),
        "an attempt not sent": report(factory, first, [task(0)], attempt=2),
    }
    for what, message in refusals.items():
        with pytest.raises(Rejected) as info:
            apply(factory, settings, signer, message)
        assert info.value.reason == Rejection.WRONG_NONCE, what
    other_pool = NodeSigner(
        enrolled(settings, "local-sv", "other pool").node_credential.get_secret_value()
    )
    with pytest.raises(Rejected) as info:
        apply(factory, settings, other_pool, report(factory, first, [task(0)]))
    assert info.value.reason == Rejection.WRONG_POOL

    bad_values = {
        "not an ARN": [
            pb.QuantumTask(index=0, arn="arn:aws:s3:::bucket", client_token="t", generation=1)
        ],
        "no tasks": [],
        "an index twice": [task(0), task(0, name="again")],
        "no generation": [task(0, generation=0)],
        "a client token that is none": [
            pb.QuantumTask(index=0, arn=f"{ACCOUNT}/x", client_token="a b", generation=1)
        ],
        "not a state": [task(0, status="DONE!")],
        "another fragment's task": [task(0, name="theirs")],
    }
    for what, tasks in bad_values.items():
        with pytest.raises(ValueError):
            apply(factory, settings, signer, report(factory, first, tasks))
        assert recorded(factory, first.id) == [], what
    with pytest.raises(ValueError, match="pool's device"):
        apply(
            factory,
            settings,
            signer,
            report(factory, first, [task(0)], device=SV1.replace("sv1", "dm1")),
        )
    assert recorded(factory, first.id) == []


def test_a_fragment_dispatched_again_carries_its_recorded_tasks(
    factory: SessionFactory, settings: Settings, signer: NodeSigner
) -> None:
    job_id, (first, _second) = running_job(factory, settings)
    apply(factory, settings, signer, report(factory, first, [task(0), task(1)]))

    def time_out() -> pb.Fragment:
        """Let the fragment's deadline pass, sweep, and read the message it is sent again as."""
        with session_scope(factory) as session:
            session.execute(
                update(Fragment)
                .where(Fragment.id == first.id)
                .values(deadline_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            session.execute(update(Fragment).values(status=repo.FragmentStatus.DISPATCHED))
        assert [e.type for e in sweep_overdue(factory, settings)] == ["redispatched"]
        with session_scope(factory) as session:
            row = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.fragment_id == first.id)
                .order_by(OutboxMessage.id.desc())
            ).first()
            assert row is not None
            return pb.Fragment.FromString(row.payload)

    message = time_out()
    assert message.attempt == 2
    with session_scope(factory) as session:
        assert message.nonce == control_plane_signer(session).nonce(first.id, 2)
    assert [(t.index, t.arn, t.client_token, t.generation) for t in message.tasks] == [
        (0, f"{ACCOUNT}/task-0-1", "token-0-1", 1),
        (1, f"{ACCOUNT}/task-1-1", "token-1-1", 1),
    ]

    # Attempt 2 resumed task 0 and replaced task 1 (it had been cancelled) with one of the
    # next generation: attempt 3 carries the latest task of each index.
    resumed = report(factory, first, [task(0), task(1, generation=2)], attempt=2, node="node-b")
    assert apply(factory, settings, signer, resumed) == "submitted"
    message = time_out()
    assert message.attempt == 3
    assert [(t.index, t.arn, t.generation) for t in message.tasks] == [
        (0, f"{ACCOUNT}/task-0-1", 1),
        (1, f"{ACCOUNT}/task-1-2", 2),
    ]
    assert fragment_row(factory, first.id).job_id == job_id


def test_a_job_that_ends_unfinished_has_the_cancel_of_its_tasks_queued(
    factory: SessionFactory, settings: Settings, signer: NodeSigner
) -> None:
    job_id, (first, second) = running_job(factory, settings)
    apply(factory, settings, signer, report(factory, first, [task(0), task(1, status="COMPLETED")]))
    with session_scope(factory) as session:  # as the API's cancel does
        job = repo.lock_job(session, job_id)
        repo.set_status(session, job, JobStatus.CANCELLED, "by request", now=datetime.now(UTC))

    assert queue_cancels(factory, settings) == {POOL}

    def cancels() -> list[tuple[str, str, pb.CancelTasks]]:
        with session_scope(factory) as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.job_id == job_id, OutboxMessage.fragment_id.is_(None))
                .order_by(OutboxMessage.id)
            ).all()
            return [(r.topic, r.key, pb.CancelTasks.FromString(r.payload)) for r in rows]

    ((topic, key, request),) = cancels()
    assert (topic, key) == (settings.cancel_topic(POOL), first.id)
    assert topic.endswith(f"fragments.{POOL}.cancel")
    # task 1 had completed: nothing to cancel there
    assert [t.arn for t in request.tasks] == [f"{ACCOUNT}/task-0-1"]
    assert request.job_id == job_id
    assert queue_cancels(factory, settings) == set()  # queued once

    # An agent reports the other fragment's tasks only now (it created them before it heard):
    # they are recorded, and their cancel is queued too.
    assert apply(factory, settings, signer, report(factory, second, [task(0, name="late")])) == (
        "submitted"
    )
    assert queue_cancels(factory, settings) == {POOL}
    assert [(k, [t.arn for t in r.tasks]) for _, k, r in cancels()][1:] == [
        (second.id, [f"{ACCOUNT}/late-0-1"])
    ]


def heartbeat(factory: SessionFactory, node: str) -> None:
    """A RUNNING heartbeat of an agent of the QPU pool, now."""
    now = datetime.now(UTC)
    with session_scope(factory) as session:
        repo.upsert_node(
            session,
            {
                "id": node,
                "pool": POOL,
                "backend": SV1,
                "hostname": "h",
                "pid": 1,
                "state": "RUNNING",
                "started_at": now,
                "last_heartbeat_at": now,
                "fragments_done": 0,
                "fragments_failed": 0,
                "bindings_done": 0,
                "credential_id": None,
            },
        )


def test_fragments_wait_while_every_agent_of_the_pool_waits_on_its_tasks(
    factory: SessionFactory, settings: Settings, signer: NodeSigner
) -> None:
    _job_id, (first, second) = running_job(factory, settings)
    heartbeat(factory, "node-a")
    apply(factory, settings, signer, report(factory, first, [task(0)], node="node-a"))

    def overdue_second() -> list[str]:
        """Let the unstarted fragment's deadline pass, run the pool watch, then the sweep."""
        with session_scope(factory) as session:
            session.execute(
                update(Fragment)
                .where(Fragment.id == second.id)
                .values(deadline_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        watch_pools(factory, settings)
        return [e.type for e in sweep_overdue(factory, settings)]

    # node-a, the pool's only agent, waits on the first fragment's tasks: the second one,
    # behind it in Kafka, is not dispatched again however long the device's queue
    assert overdue_second() == []
    assert fragment_row(factory, second.id).attempt == 1
    # an agent free to take work: the second fragment's clock runs again
    heartbeat(factory, "node-b")
    assert overdue_second() == ["redispatched"]
    assert fragment_row(factory, second.id).attempt == 2
