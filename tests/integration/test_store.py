"""The store, the outbox relay and the aggregator against real Postgres and a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from orchestrator.dispatch import plan_next_job, relay_outbox, sweep_overdue
from proto.qorch.v1 import fragments_pb2 as pb
from qorch.embedded import EmbeddedPostgres
from qorchestra.config import Settings
from qorchestra.kafka import Consumer, Producer, ensure_topics
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, session_scope
from qorchestra.store.migrate import SchemaNotReady, check_schema
from qorchestra.store.models import OutboxMessage
from tests.support.stored_jobs import (
    apply,
    apply_as_agent,
    fragments_of,
    plan_until,
    submit,
    success_for,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_unmigrated_database_is_refused(kafka_bootstrap: str) -> None:
    with EmbeddedPostgres() as pg:
        engine = make_engine(pg.url, check=False)
        with pytest.raises(SchemaNotReady, match="qorch db upgrade"):
            check_schema(engine)
        engine.dispose()
        env = {**os.environ, "QORCH_DATABASE_URL": pg.url, "QORCH_KAFKA_BOOTSTRAP": kafka_bootstrap}
        for service in ("api", "orchestrator"):
            done = subprocess.run(
                [sys.executable, "-m", "qorch.cli", service],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert "run `qorch db upgrade`" in done.stderr


def test_plan_writes_fragments_and_outbox_in_one_transaction(
    factory: SessionFactory, settings: Settings
) -> None:
    settings = settings.model_copy(update={"fragment_bindings": 4})
    job_id = submit(factory, bindings=10)
    plan_until(factory, settings, job_id)
    fragments = fragments_of(factory, job_id)
    assert [(f.binding_offset, f.binding_count) for f in fragments] == [(0, 4), (4, 4), (8, 2)]
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert job.status == "RUNNING" and job.fragments_total == 3
        outbox = [r for r in repo.pending_outbox(session, 10_000) if r.job_id == job_id]
        assert sorted(str(r.fragment_id) for r in outbox) == sorted(f.id for f in fragments)
        assert [e.type for e in repo.events_after(session, job_id, 0)] == ["submitted", "running"]


def test_relay_publishes_and_marks_dispatched(factory: SessionFactory, settings: Settings) -> None:
    ensure_topics(settings, ["local-sv"])
    job_id = submit(factory, bindings=5)
    plan_until(factory, settings, job_id)
    producer = Producer(settings)
    while relay_outbox(factory, producer, settings):
        pass
    producer.close()
    fragments = fragments_of(factory, job_id)
    assert all(f.status == "dispatched" and f.deadline_at is not None for f in fragments)
    consumer = Consumer(settings, [settings.fragments_topic("local-sv")], group=None)
    seen: dict[str, pb.Fragment] = {}

    def received() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None:
            fragment = pb.Fragment.FromString(msg.value() or b"")
            seen[fragment.fragment_id] = fragment
        return {f.id for f in fragments} <= set(seen)

    try:
        wait_until(received, timeout=15, what="fragments on the topic")
    finally:
        consumer.close()
    first = seen[fragments[0].id]
    assert first.job_id == job_id and first.attempt == 1 and len(first.bindings) == 5


def test_aggregation_is_idempotent_and_finishes_the_job(
    factory: SessionFactory, settings: Settings
) -> None:
    settings = settings.model_copy(update={"fragment_bindings": 3})
    job_id = submit(factory, bindings=7)
    plan_until(factory, settings, job_id)
    fragments = fragments_of(factory, job_id)
    results = [success_for(f, job_id, value=f.binding_offset / 10) for f in fragments]
    # out of order, with duplicates, and a different value in a duplicate: the first one wins
    assert apply(factory, settings, results[2]) == "counted"
    assert apply(factory, settings, results[2]) == "duplicate"
    assert apply(factory, settings, results[0]) == "counted"
    assert apply(factory, settings, success_for(fragments[0], job_id, value=-0.99)) == "duplicate"
    assert apply(factory, settings, results[1]) == "counted"
    assert apply(factory, settings, results[1]) == "duplicate"
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert job.status == "SUCCEEDED" and job.bindings_done == 7
        values = job.result["programs"][0]["values"]  # type: ignore[index]
        assert [v[0] for v in values] == [0, 0, 0, 0.3, 0.3, 0.3, 0.6]
        assert [v[1] for v in values] == [0, 0.01, 0.02, 0, 0.01, 0.02, 0]
        events = repo.events_after(session, job_id, 0)
    assert [e.type for e in events] == [
        "submitted", "running", "progress", "progress", "progress", "succeeded"
    ]  # fmt: skip
    assert [e.seq for e in events] == list(range(1, 7))
    # late results after the end change nothing
    assert apply(factory, settings, results[0]) == "duplicate"


def test_a_result_wakes_dispatch_only_when_dispatch_has_work(
    factory: SessionFactory, settings: Settings
) -> None:
    """A result asks for a dispatch pass when its job has fragments left to write, or when it
    queued an outbox message (a retry); a result of a fully written job asks for none."""
    settings = settings.model_copy(
        update={"fragment_bindings": 1, "max_inflight_per_job": 2, "max_attempts": 3}
    )
    job_id = submit(factory, bindings=3)  # 3 fragments, 2 written in the first window
    plan_until(factory, settings, job_id)
    first, second = fragments_of(factory, job_id)
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert (job.fragments_written, job.fragments_total) == (2, 3)

    def outcome(result: pb.FragmentResult) -> tuple[str, bool]:
        with session_scope(factory) as session:
            applied = apply_as_agent(session, result, settings)
        return applied.kind, applied.dispatch

    assert outcome(success_for(first, job_id)) == ("counted", True)  # the third is unwritten
    assert outcome(success_for(first, job_id)) == ("duplicate", False)
    plan_next_job(factory, settings)  # tops the window up: the job is fully written
    third = fragments_of(factory, job_id)[2]
    failure = pb.FragmentResult(
        fragment_id=second.id,
        job_id=job_id,
        attempt=1,
        node_id="test-node",
        failure=pb.FragmentFailure(error="busy", error_type="Throttled", retryable=True),
    )
    assert outcome(failure) == ("retried", True)  # its retry is in the outbox
    assert outcome(success_for(second, job_id, attempt=2)) == ("counted", False)
    assert outcome(success_for(third, job_id)) == ("counted", False)
    with factory() as session:
        assert repo.get_job(session, job_id).status == "SUCCEEDED"


def test_unknown_fragment_is_ignored(factory: SessionFactory, settings: Settings) -> None:
    result = pb.FragmentResult(fragment_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()))
    assert apply(factory, settings, result) == "unknown"


def test_failures_retry_then_fail_the_job_with_a_reason(
    factory: SessionFactory, settings: Settings
) -> None:
    settings = settings.model_copy(update={"max_attempts": 2, "fragment_bindings": 10})
    job_id = submit(factory, bindings=2)
    plan_until(factory, settings, job_id)
    (fragment,) = fragments_of(factory, job_id)
    failure = pb.FragmentFailure(error="device on fire", error_type="RuntimeError", retryable=True)
    first = pb.FragmentResult(fragment_id=fragment.id, job_id=job_id, attempt=1, failure=failure)
    assert apply(factory, settings, first) == "retried"
    with factory() as session:
        keys = [r.key for r in repo.pending_outbox(session, 10_000) if r.job_id == job_id]
        # keyed by attempt: it may land on another partition than a straggler still holding
        # attempt 1 (docs/guarantees.md)
        assert keys == [fragment.id, f"{fragment.id}/2"]
    assert apply(factory, settings, first) == "stale"  # attempt 2 is out; attempt 1 news is old
    second = pb.FragmentResult(fragment_id=fragment.id, job_id=job_id, attempt=2, failure=failure)
    assert apply(factory, settings, second) == "failed"
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert job.status == "FAILED"
        assert job.error is not None
        assert "program 0, bindings 0-1" in job.error and "device on fire" in job.error
        dlq = [r for r in repo.pending_outbox(session, 10_000) if r.job_id == job_id]
        assert [r.topic for r in dlq] == [settings.topic("fragments.dlq")]
        letter = pb.DeadLetter.FromString(dlq[0].payload)
        assert letter.fragment.fragment_id == fragment.id and "device on fire" in letter.reason


def test_non_retryable_failure_fails_at_once(factory: SessionFactory, settings: Settings) -> None:
    job_id = submit(factory, bindings=1)
    plan_until(factory, settings, job_id)
    (fragment,) = fragments_of(factory, job_id)
    failure = pb.FragmentFailure(error="bad program", error_type="ValueError", retryable=False)
    result = pb.FragmentResult(fragment_id=fragment.id, job_id=job_id, attempt=1, failure=failure)
    assert apply(factory, settings, result) == "failed"


def test_overdue_fragments_are_sent_again_then_fail(
    factory: SessionFactory, settings: Settings
) -> None:
    settings = settings.model_copy(update={"fragment_timeout_s": 0.05, "max_attempts": 2})
    ensure_topics(settings, ["local-sv"])
    job_id = submit(factory, bindings=1)
    plan_until(factory, settings, job_id)
    producer = Producer(settings)

    def relay_all() -> None:
        while relay_outbox(factory, producer, settings):
            pass

    relay_all()
    events = wait_until(lambda: sweep_overdue(factory, settings), 5, what="a re-dispatch")
    assert any(e.type == "redispatched" and e.job_id == job_id for e in events)
    assert fragments_of(factory, job_id)[0].attempt == 2
    relay_all()
    events = wait_until(lambda: sweep_overdue(factory, settings), 5, what="the job failing")
    producer.close()
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert job.status == "FAILED"
        assert job.error is not None and "not answered within 0.05s" in job.error


def test_cancel_drops_pending_dispatch_and_ignores_late_results(
    factory: SessionFactory, settings: Settings
) -> None:
    from datetime import UTC, datetime

    from qorchestra.lifecycle import InvalidTransition, JobStatus

    job_id = submit(factory, bindings=3)
    plan_until(factory, settings, job_id)
    with session_scope(factory) as session:
        job = repo.lock_job(session, job_id)
        repo.set_status(session, job, JobStatus.CANCELLED, "by test", now=datetime.now(UTC))
    with factory() as session:
        assert not [r for r in repo.pending_outbox(session, 10_000) if r.job_id == job_id]
    (fragment,) = fragments_of(factory, job_id)
    assert apply(factory, settings, success_for(fragment, job_id)) == "late"
    with session_scope(factory) as session, pytest.raises(InvalidTransition):
        repo.set_status(session, repo.lock_job(session, job_id), JobStatus.RUNNING,
                        now=datetime.now(UTC))  # fmt: skip


def test_cancel_does_not_wait_for_a_relay_publishing_the_jobs_fragments(
    factory: SessionFactory, settings: Settings
) -> None:
    """A relay holds some of the job's outbox rows (publishing them) while the job is
    cancelled: the cancel drops the others at once instead of waiting for the relay, which
    could be waiting in turn for a fragment a result holds, and that result for the job."""
    settings = settings.model_copy(update={"fragment_bindings": 2})
    job_id = submit(factory, bindings=8)
    plan_until(factory, settings, job_id)
    with factory() as relay, relay.begin():
        held = [r.fragment_id for r in repo.pending_outbox(relay, 2)]  # locked, like a relay
        assert len(held) == 2
        with factory() as cancel, cancel.begin():
            cancel.execute(text("SET LOCAL lock_timeout = '3s'"))  # a wait fails the test
            job = repo.lock_job(cancel, job_id)
            repo.set_status(cancel, job, JobStatus.CANCELLED, "cancelled", now=datetime.now(UTC))
        with factory() as session:
            left = session.scalars(
                select(OutboxMessage.fragment_id).where(OutboxMessage.job_id == job_id)
            ).all()
        assert sorted(map(str, left)) == sorted(map(str, held))  # only the relay's rows
    with factory() as session:
        assert repo.get_job(session, job_id).status == JobStatus.CANCELLED
