"""gRPC JobService: GetJob and WatchJob (replay stored events, then follow live ones)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from api import use_cases
from api.auth import Principal, authenticate
from api.event_hub import EventHub, in_order
from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorchestra.apikeys import bearer_token, key_prefix
from qorchestra.config import Settings
from qorchestra.lifecycle import is_terminal
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory
from qorchestra.store.events import STATUS_TO_PROTO, event_to_proto
from qorchestra.store.models import Job

logger = logging.getLogger(__name__)

#: How often a watcher re-reads the store when nothing arrived (broker unreachable).
FALLBACK_POLL_S = 1.0
#: Stored events read at once.
READ_PAGE = 500


def job_to_proto(job: Job) -> jobs_pb2.Job:
    """The wire form of a job's state."""

    def ts(value: object) -> Timestamp | None:
        if value is None:
            return None
        stamp = Timestamp()
        stamp.FromDatetime(value)  # type: ignore[arg-type]
        return stamp

    return jobs_pb2.Job(
        job_id=job.id,
        name=job.name,
        kind=job.kind,
        pool=job.pool,
        status=STATUS_TO_PROTO[job.status],
        error=job.error or "",
        fragments_done=job.fragments_done,
        fragments_total=job.fragments_total,
        bindings_done=job.bindings_done,
        bindings_total=job.bindings_total,
        last_seq=job.last_seq,
        created_at=ts(job.created_at),
        started_at=ts(job.started_at),
        finished_at=ts(job.finished_at),
    )


class JobService(jobs_pb2_grpc.JobServiceServicer):
    """Translates between protobuf and the use cases (``api/use_cases.py``); no logic of its
    own."""

    def __init__(self, sessions: SessionFactory, hub: EventHub) -> None:
        self._sessions = sessions
        self._hub = hub

    async def _principal(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller, from ``authorization: Bearer <key>`` in the call metadata; the call is
        aborted with UNAUTHENTICATED without a valid key, PERMISSION_DENIED without ``read``."""
        header = next(
            (v for k, v in context.invocation_metadata() or () if k == "authorization"), None
        )
        key = bearer_token(header if isinstance(header, str) else None)
        if key is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing API key: send metadata authorization: Bearer <key>",
            )
        assert key is not None
        principal = await asyncio.to_thread(authenticate, self._sessions, key)
        if principal is None:
            shown = key_prefix(key).encode("ascii", "replace").decode()
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"invalid or revoked API key {shown}..."
            )
        assert principal is not None
        if not principal.allows("read"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"key {principal.prefix}... lacks 'read'"
            )
        return principal

    async def _job(self, job_id: str, context: grpc.aio.ServicerContext) -> Job:
        principal = await self._principal(context)
        try:
            uuid.UUID(job_id)
        except ValueError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"job_id {job_id!r} is not a UUID"
            )

        def load() -> Job:
            with self._sessions() as session:
                return use_cases.read_job(session, principal, job_id)

        try:
            return await asyncio.to_thread(load)
        except repo.NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        raise AssertionError("unreachable")

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        return job_to_proto(await self._job(request.job_id, context))

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.JobEvent]:
        job = await self._job(request.job_id, context)
        last = request.from_seq
        if is_terminal(job.status) and last >= job.last_seq:
            return
        subscription = self._hub.watch(job.id)  # before the first read: nothing is missed

        def read(after: int) -> list[jobs_pb2.JobEvent]:
            with self._sessions() as session:
                rows = use_cases.events_after(session, job.id, after, READ_PAGE)
                return [event_to_proto(row) for row in rows]

        try:
            read_store = True  # replay the history first
            while True:
                subscription.wake.clear()  # before taking, so a later push is not lost
                pushed, stale = subscription.take()
                events, gap = in_order(last, pushed)
                if read_store or stale or gap:
                    events = await asyncio.to_thread(read, last)
                    read_store = len(events) >= READ_PAGE  # more than one page behind
                for event in events:
                    yield event
                    last = event.seq
                    if event.status in _TERMINAL:
                        return
                if not events and not read_store:
                    try:
                        await asyncio.wait_for(subscription.wake.wait(), FALLBACK_POLL_S)
                    except TimeoutError:  # no word from the broker: ask the store
                        read_store = True
        finally:
            self._hub.unwatch(subscription)


_TERMINAL = {
    jobs_pb2.JOB_STATUS_SUCCEEDED,
    jobs_pb2.JOB_STATUS_FAILED,
    jobs_pb2.JOB_STATUS_CANCELLED,
}


def create_server(
    settings: Settings, sessions: SessionFactory, hub: EventHub
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server with JobService and health, bound to the configured address.

    Returns the server (not started) and the port it bound (useful with port 0).
    """
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(sessions, hub), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC to {settings.grpc_host}:{settings.grpc_port}")
    for name in ("", "qorch.v1.JobService"):
        asyncio.get_event_loop().create_task(
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        )
    return server, port
