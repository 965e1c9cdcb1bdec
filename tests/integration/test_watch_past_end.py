"""``WatchJob`` with a ``from_seq`` past the job's last event follows the job from there and
ends with its final event; for a job already finished it ends at once. A real API (gRPC over
TCP), real Postgres and broker; the job's events are stored and published as the orchestrator
does."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import Engine

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.samples import demo_job
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus
from qorchestra.store.db import SessionFactory, make_session_factory
from tests.support.api import RunningApi, running_api
from tests.support.job_events import OrchestratedJobs
from tests.support.stored_jobs import store_circuits_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        yield running


@pytest.fixture
def producer(api: RunningApi) -> Iterator[Producer]:
    producer = Producer(api.settings)
    yield producer
    producer.close()


@pytest.fixture
def events(engine: Engine, producer: Producer, api: RunningApi) -> OrchestratedJobs:
    return OrchestratedJobs(make_session_factory(engine), producer, api.settings)


class Watch:
    """A ``WatchJob`` call read to its end in a thread."""

    def __init__(self, api: RunningApi, job_id: str, from_seq: int) -> None:
        self.received: list[jobs_pb2.JobEvent] = []
        self.error: grpc.RpcError | None = None
        self._args = api, job_id, from_seq
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        api, job_id, from_seq = self._args
        metadata = (("authorization", f"Bearer {api.admin_key}"),)
        request = jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=from_seq)
        with grpc.insecure_channel(api.grpc_target) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            try:  # the deadline ends a stream that never ends
                for event in stub.WatchJob(request, metadata=metadata, timeout=DEADLINE_S):
                    self.received.append(event)
            except grpc.RpcError as exc:
                self.error = exc

    def ended(self, timeout: float = DEADLINE_S) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _running_job(factory: SessionFactory, events: OrchestratedJobs) -> str:
    """A RUNNING job: events 1 (submitted) and 2 (running)."""
    job_id = store_circuits_job(factory, CircuitsJob.model_validate(demo_job(2)), "watched")
    events.status(job_id, JobStatus.RUNNING)
    return job_id


@pytest.mark.parametrize("from_seq", [3, 1000, 2**31 - 1])
def test_a_watch_past_the_end_follows_the_job_and_ends_with_it(
    api: RunningApi, engine: Engine, events: OrchestratedJobs, from_seq: int
) -> None:
    job_id = _running_job(make_session_factory(engine), events)
    watch = Watch(api, job_id, from_seq)
    try:
        # live: progress events reach it (once one did, the watch certainly began before the
        # job ends below)

        def nudged() -> list[jobs_pb2.JobEvent]:
            events.progress(job_id)
            return watch.received

        wait_until(nudged, timeout=DEADLINE_S, interval=0.2, what="a progress event reaching it")
    finally:
        events.status(job_id, JobStatus.SUCCEEDED)
    assert watch.ended(), "the watch did not end with the job"
    assert watch.error is None, watch.error
    seqs = [e.seq for e in watch.received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none twice
    assert seqs[0] >= 3  # only what came after the watch began
    assert watch.received[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED


@pytest.mark.parametrize("past", [0, 1, 1000, 2**31 - 10])
def test_a_watch_at_or_past_the_end_of_a_finished_job_ends_at_once(
    api: RunningApi, engine: Engine, events: OrchestratedJobs, past: int
) -> None:
    job_id = _running_job(make_session_factory(engine), events)
    events.status(job_id, JobStatus.SUCCEEDED)  # its last event: 3
    watch = Watch(api, job_id, 3 + past)
    assert watch.ended(timeout=10)
    assert watch.error is None and watch.received == []
