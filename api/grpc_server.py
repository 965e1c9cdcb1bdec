"""gRPC JobService: GetJob and WatchJob (replay stored events, then follow live ones).

Errors are mapped to status codes in one table (``ERRORS``) applied to every handler: the
caller learns what it did wrong (NOT_FOUND, INVALID_ARGUMENT) or that the service cannot answer
now (UNAVAILABLE, INTERNAL), never how the service is built (SQL, hosts, ports, tracebacks);
those go to the log.

Access is checked for as long as a stream lasts: a stream whose key is revoked (through any API
process) ends with UNAUTHENTICATED within about ``KEY_CHECK_S`` (``KeyChecks``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.exc import DataError, DBAPIError

from api import use_cases
from api.auth import KeyCache, Principal
from api.event_hub import EventHub, in_order
from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorchestra import metrics
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
#: The largest ``from_seq`` the store can compare with (seqs are 32-bit integer columns).
MAX_SEQ = 2**31 - 1
#: How often each API process checks that the keys of its open streams are still valid
#: (``KeyChecks``). A key revoked through any process ends its streams in every process within
#: this plus two primary-key reads: about 0.5 s, inside the 1 s that revocation promises.
KEY_CHECK_S = 0.5


class InvalidArgument(ValueError):
    """The request is malformed (INVALID_ARGUMENT); the message names the field at fault."""


class KeyUnconfirmed(Exception):
    """The periodic check of a stream's key failed (the store did not answer): the stream
    ends (UNAVAILABLE) rather than go on unchecked; the client reconnects and is checked."""


#: Exceptions a handler may raise, in the order they are tried, with the status each gives
#: and what the caller is told: the exception's own message only where it is written for the
#: caller (NotFound, InvalidArgument), a fixed one otherwise. A DataError is a value the
#: database refused; our own checks run first (``from_seq``, ``job_id``), so it is not
#: expected, but it is still the request's fault, not the service's. Anything else is
#: INTERNAL, with the details in the log only.
ERRORS: tuple[tuple[type[Exception], grpc.StatusCode, str | None], ...] = (
    (repo.NotFound, grpc.StatusCode.NOT_FOUND, None),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, None),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT, "a value of the request is invalid"),
    (DBAPIError, grpc.StatusCode.UNAVAILABLE, "database unavailable"),
    (KeyUnconfirmed, grpc.StatusCode.UNAVAILABLE, "database unavailable"),
)
INTERNAL_MESSAGE = "internal error"

Request = TypeVar("Request")
Reply = TypeVar("Reply")


async def abort_for(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    """End the call with the status ``ERRORS`` gives ``exc``, and log what the caller is not
    told. An abort the handler chose itself (``context.abort``) passes unchanged."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    for kind, code, message in ERRORS:
        if isinstance(exc, kind):
            if message is None:  # written for the caller
                logger.debug("gRPC %s answered %s: %s", method, code.name, exc)
                await context.abort(code, str(exc))
            if code is grpc.StatusCode.UNAVAILABLE:
                metrics.API_UNAVAILABLE.labels("postgres").inc()
            # the driver's own error (a DBAPIError's str() also holds the SQL and parameters)
            logger.warning(
                "gRPC %s answered %s: %s", method, code.name, getattr(exc, "orig", None) or exc
            )
            await context.abort(code, message)
    logger.error("gRPC %s failed", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    raise AssertionError("unreachable: abort raises")


def unary_errors(
    method: Callable[[Any, Request, grpc.aio.ServicerContext], Coroutine[Any, Any, Reply]],
) -> Callable[[Any, Request, grpc.aio.ServicerContext], Coroutine[Any, Any, Reply]]:
    """Apply ``ERRORS`` to a unary handler."""

    @functools.wraps(method)
    async def handler(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await abort_for(exc, context, method.__name__)

    return handler


def stream_errors(
    method: Callable[[Any, Request, grpc.aio.ServicerContext], AsyncGenerator[Reply, None]],
) -> Callable[[Any, Request, grpc.aio.ServicerContext], AsyncGenerator[Reply, None]]:
    """Apply ``ERRORS`` to a server-streaming handler. The handler's generator is closed when
    the call ends early (the client went away), so its ``finally`` runs at once."""

    @functools.wraps(method)
    async def handler(
        self: Any, request: Request, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[Reply, None]:
        try:
            async with aclosing(method(self, request, context)) as replies:
                async for reply in replies:
                    yield reply
        except Exception as exc:
            await abort_for(exc, context, method.__name__)

    return handler


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


@dataclass(eq=False)
class KeyHold:
    """One open stream's claim on its key: ``KeyChecks`` marks it and sets ``wake`` (the
    stream's subscription wake-up) when the key is revoked or cannot be checked."""

    key_id: str
    wake: asyncio.Event
    revoked: bool = False
    error: Exception | None = None


class KeyChecks:
    """Ends the streams of revoked keys: every ``KEY_CHECK_S``, one read asks the store which
    of the keys held by this process's open streams are still valid, and the streams of the
    others are woken to end with UNAUTHENTICATED. It runs only while a stream is open.

    Why a periodic check and not Postgres ``LISTEN``/``NOTIFY``: the store (``api_keys.
    revoked_at``) is the only place every revocation reaches: ``DELETE /v1/keys/{id}``,
    ``rotate-admin``, a replica starting with a newer ``QORCH_ADMIN_KEY``, an operator's SQL.
    Notifications would need each of those paths to send one, plus a listening connection
    per process, and a periodic check anyway for a missed notification (the listener's
    connection drops) and the paths that send none; the check alone meets the bound. Its cost
    does not grow with streams: one query per process per interval (2 a second), a primary-key
    lookup of the distinct keys held (``id = ANY(...)``), on a thread of its own, so a busy
    shared thread pool cannot delay it. Per stream: a set entry, and one flag test per wake-up
    and per event. (Checking per stream would cost 2 queries a second per stream: 2000 a
    second for 1000 streams.) The bound holds while Postgres answers that read promptly; a
    check that fails ends the streams it covered with UNAVAILABLE (fail closed)."""

    def __init__(self, sessions: SessionFactory, interval_s: float = KEY_CHECK_S) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._holds: dict[str, set[KeyHold]] = {}  # key id -> its open streams' holds
        self._task: asyncio.Task[None] | None = None

    def hold(self, key_id: str, wake: asyncio.Event) -> KeyHold:
        """Check ``key_id`` until ``release``; ``wake`` is set when the holder must look.
        Call on the event loop, then ``release`` in a ``finally``."""
        hold = KeyHold(key_id, wake)
        self._holds.setdefault(key_id, set()).add(hold)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="key-checks")
        return hold

    def release(self, hold: KeyHold) -> None:
        """Stop checking for this stream; the checks stop with the last stream."""
        holds = self._holds.get(hold.key_id)
        if holds is not None:
            holds.discard(hold)
            if not holds:
                del self._holds[hold.key_id]
        if not self._holds and self._task is not None:
            self._task.cancel()
            self._task = None

    def _valid(self, key_ids: list[str]) -> set[str]:
        with self._sessions() as session:
            return repo.valid_key_ids(session, key_ids)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(1, thread_name_prefix="key-checks")
        try:
            while True:
                await asyncio.sleep(self._interval_s)
                key_ids = list(self._holds)
                try:
                    valid = await loop.run_in_executor(executor, self._valid, key_ids)
                except Exception as exc:
                    logger.warning("API key check of open streams failed: %s", exc)
                    self._mark([k for k in key_ids if k in self._holds], error=exc)
                else:
                    self._mark([k for k in key_ids if k not in valid and k in self._holds])
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _mark(self, key_ids: list[str], error: Exception | None = None) -> None:
        for key_id in key_ids:
            for hold in self._holds[key_id]:
                if error is None:
                    hold.revoked = True
                elif not hold.revoked:
                    hold.error = error
                hold.wake.set()


class JobService(jobs_pb2_grpc.JobServiceServicer):
    """Translates between protobuf and the use cases (``api/use_cases.py``); no logic of its
    own."""

    def __init__(self, sessions: SessionFactory, keys: KeyCache, hub: EventHub) -> None:
        self._sessions = sessions
        self._keys_accepted = keys
        self._hub = hub
        self._keys = KeyChecks(sessions)

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
        principal = await asyncio.to_thread(self._keys_accepted.principal, key)
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

    async def _job(self, job_id: str, context: grpc.aio.ServicerContext) -> tuple[Principal, Job]:
        """The caller and the job it asks for (NotFound when it may not see it)."""
        principal = await self._principal(context)
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise InvalidArgument(f"job_id {job_id[:64]!r} is not a UUID") from None

        def load() -> Job:
            with self._sessions() as session:
                return use_cases.read_job(session, principal, job_id)

        return principal, await asyncio.to_thread(load)

    @staticmethod
    async def _still_allowed(
        hold: KeyHold, principal: Principal, context: grpc.aio.ServicerContext
    ) -> None:
        """End the stream when its key was revoked (UNAUTHENTICATED, the key by prefix only)
        or could not be checked (UNAVAILABLE)."""
        if hold.revoked:
            logger.info("WatchJob ended: API key %s... was revoked", principal.prefix)
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"API key {principal.prefix}... was revoked"
            )
        if hold.error is not None:
            raise KeyUnconfirmed(f"key {principal.prefix}... unchecked") from hold.error

    @unary_errors
    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        _, job = await self._job(request.job_id, context)
        return job_to_proto(job)

    @stream_errors
    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[jobs_pb2.JobEvent, None]:
        principal, job = await self._job(request.job_id, context)
        if request.from_seq > MAX_SEQ:
            raise InvalidArgument(f"from_seq must be at most {MAX_SEQ}")
        if is_terminal(job.status) and request.from_seq >= job.last_seq:
            return  # nothing after from_seq, and nothing will come
        # A from_seq past the job's last event asks for what comes next: follow from the
        # last event, so the stream yields the events still to come and ends with the final
        # one (waiting for events after from_seq itself would skip that one and never end).
        last = min(request.from_seq, job.last_seq)
        subscription = self._hub.watch(job.id)  # before the first read: nothing is missed
        # Access is checked for as long as the stream lasts, not only when it opens: a revoked
        # key's stream ends within about KEY_CHECK_S, events or not (``KeyChecks``). A check
        # wakes the stream through its subscription, as a pushed event does.
        hold = self._keys.hold(principal.key_id, subscription.wake)

        def read(after: int) -> list[jobs_pb2.JobEvent]:
            with self._sessions() as session:
                rows = use_cases.events_after(session, job.id, after, READ_PAGE)
                return [event_to_proto(row) for row in rows]

        try:
            read_store = True  # replay the history first
            while True:
                subscription.wake.clear()  # before taking, so a later push is not lost
                await self._still_allowed(hold, principal, context)  # after clear: no mark lost
                pushed, stale = subscription.take()
                events, gap = in_order(last, pushed)
                if read_store or stale or gap:
                    events = await asyncio.to_thread(read, last)
                    read_store = len(events) >= READ_PAGE  # more than one page behind
                for event in events:
                    await self._still_allowed(hold, principal, context)
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
            self._keys.release(hold)
            self._hub.unwatch(subscription)


_TERMINAL = {
    jobs_pb2.JOB_STATUS_SUCCEEDED,
    jobs_pb2.JOB_STATUS_FAILED,
    jobs_pb2.JOB_STATUS_CANCELLED,
}


def create_server(
    settings: Settings, sessions: SessionFactory, keys: KeyCache, hub: EventHub
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server with JobService and health, bound to the configured address.

    Returns the server (not started) and the port it bound (useful with port 0).
    """
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(sessions, keys, hub), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if settings.grpc_tls_cert_file:  # TLS only: the key and chain are read once, at start
        with (
            open(settings.grpc_tls_key_file, "rb") as key,
            open(settings.grpc_tls_cert_file, "rb") as chain,
        ):
            credentials = grpc.ssl_server_credentials([(key.read(), chain.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC to {settings.grpc_host}:{settings.grpc_port}")
    for name in ("", "qorch.v1.JobService"):
        asyncio.get_event_loop().create_task(
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        )
    return server, port
