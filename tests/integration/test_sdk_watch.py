"""``Client.watch`` (and ``AsyncClient.watch``) over a connection that breaks: the gRPC
connection goes through a TCP proxy whose connections are dropped mid-stream; the watch resumes
after the last event it saw, and yields every event of the job once, in order, to the final
one. A connection that cannot be made again ends the watch with ``Unavailable`` after its
bounded retries. Real API (gRPC over TCP), Postgres and broker; the job's events are stored and
published as the orchestrator does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from qorch.client import (
    AsyncClient,
    Client,
    JobEvent,
    JobStatus,
    NotFound,
    Timeout,
    Unavailable,
)
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus as StoredStatus
from qorchestra.store.db import make_session_factory
from tests.support.api import RunningApi, running_api
from tests.support.job_events import OrchestratedJobs
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        yield running


@pytest.fixture
def events(engine: Engine, api: RunningApi) -> Iterator[OrchestratedJobs]:
    producer = Producer(api.settings)
    yield OrchestratedJobs(make_session_factory(engine), producer, api.settings)
    producer.close()


class Watcher:
    """``client.watch(job_id)`` read to its end in a thread."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.received: list[JobEvent] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(client, job_id), daemon=True)
        self._thread.start()

    def _run(self, client: Client, job_id: str) -> None:
        try:
            for event in client.watch(job_id, timeout=DEADLINE_S):
                self.received.append(event)
        except BaseException as exc:
            self.error = exc

    def ended(self) -> bool:
        self._thread.join(DEADLINE_S)
        return not self._thread.is_alive()


def test_a_watch_resumes_after_its_connection_is_dropped(
    api: RunningApi, events: OrchestratedJobs
) -> None:
    job_id = events.running()  # events 1 (submitted) and 2 (running)
    with (
        TcpProxy(api.grpc_target) as proxy,
        Client(api.url, api.admin_key, proxy.address) as client,
    ):
        watcher = Watcher(client, job_id)
        wait_until(lambda: len(watcher.received) == 2, DEADLINE_S, what="the first two events")

        assert proxy.cut() == 1  # the watch's connection, dropped mid-stream
        events.progress(job_id)  # 3: while the stream is down, or after it resumed
        wait_until(lambda: len(watcher.received) == 3, DEADLINE_S, what="event 3")
        assert proxy.accepted == 2  # it connected again

        assert proxy.cut() == 1  # and once more, before the job ends
        events.progress(job_id)
        events.status(job_id, StoredStatus.SUCCEEDED)
        assert watcher.ended() and watcher.error is None, watcher.error

    seqs = [event.seq for event in watcher.received]
    assert seqs == [1, 2, 3, 4, 5]  # every event, once, in order
    assert [event.type for event in watcher.received][-1] == "succeeded"
    assert watcher.received[-1].status is JobStatus.SUCCEEDED and watcher.received[-1].terminal
    assert proxy.accepted == 3


def test_the_async_watch_resumes_after_its_connection_is_dropped(
    api: RunningApi, events: OrchestratedJobs
) -> None:
    job_id = events.running()

    async def watch(proxy: TcpProxy) -> list[int]:
        seqs: list[int] = []
        async with AsyncClient(api.url, api.admin_key, proxy.address) as client:
            async for event in client.watch(job_id, timeout=DEADLINE_S):
                seqs.append(event.seq)
                if event.seq == 2:
                    assert proxy.cut() == 1
                    await asyncio.to_thread(events.progress, job_id)
                    await asyncio.to_thread(events.status, job_id, StoredStatus.CANCELLED)
        return seqs

    with TcpProxy(api.grpc_target) as proxy:
        assert asyncio.run(watch(proxy)) == [1, 2, 3, 4]
        assert proxy.accepted == 2


def test_a_watch_that_cannot_reconnect_ends_after_its_retries(
    api: RunningApi, events: OrchestratedJobs
) -> None:
    job_id = events.running()
    proxy = TcpProxy(api.grpc_target).__enter__()
    with Client(api.url, api.admin_key, proxy.address, watch_retries=2) as client:
        stream = client.watch(job_id, timeout=DEADLINE_S)
        assert [next(stream).seq, next(stream).seq] == [1, 2]
        proxy.close()  # the connection dropped, and nothing listens any more
        with pytest.raises(Unavailable, match="after 2 attempts to resume"):
            next(stream)


def test_an_unknown_job_is_not_found_at_once(api: RunningApi) -> None:
    with (
        Client(api.url, api.admin_key, api.grpc_target) as client,
        pytest.raises(NotFound, match="gRPC NOT_FOUND"),
    ):
        next(client.watch("00000000-0000-0000-0000-000000000000"))


def test_waiting_past_the_timeout_is_a_timeout(api: RunningApi, events: OrchestratedJobs) -> None:
    job_id = events.running()  # quiet: nothing happens to it until the test ends it
    with Client(api.url, api.admin_key, api.grpc_target) as client:
        job = client.job(job_id)
        with pytest.raises(Timeout):
            job.wait(timeout=1.0)
        assert job.status is JobStatus.RUNNING
        events.status(job_id, StoredStatus.FAILED)
        assert job.wait(timeout=DEADLINE_S).status is JobStatus.FAILED
