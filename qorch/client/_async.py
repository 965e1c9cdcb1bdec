"""``AsyncClient``: ``Client`` for asyncio (httpx.AsyncClient, grpc.aio), and ``AsyncJob``.
The routes, specs, answers, errors and retry decisions are ``Client``'s own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import httpx

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.client import _routes as routes
from qorch.client._config import ClientConfig
from qorch.client._errors import Timeout
from qorch.client._models import (
    ApiKey,
    Checkpoint,
    CreatedKey,
    Dataset,
    EnrolledNode,
    JobEvent,
    JobResult,
    JobState,
    Metrics,
    Node,
    NodeCredential,
    Page,
    Pool,
    Predictions,
    Readiness,
    RotatedAdminKey,
    Tenant,
)
from qorch.client._retry import Resumption, RetryPolicy
from qorch.client._specs import Binding, ProgramItem, job_spec, optimisation_spec
from qorch.client._transport import (
    CHANNEL_OPTIONS,
    DEFAULT_TIMEOUT_S,
    PREDICT_TIMEOUT_S,
    WATCH_RETRIES,
    channel_credentials,
    decode,
    headers_for,
    retry_pause,
    transport_error,
)


class AsyncJob(JobState):
    """A job, as the API last showed it, with ``Job``'s methods as coroutines (``watch`` is
    an async iterator)."""

    _client: AsyncClient

    @classmethod
    def _of(cls, client: AsyncClient, data: Mapping[str, Any]) -> AsyncJob:
        job = cls(**JobState.fields(data))
        job._client = client
        job._keep(data)
        return job

    async def refresh(self) -> AsyncJob:
        """Read the job again; returns it."""
        self._update(await self._client._send(routes.job(self.id)))
        return self

    async def wait(self, timeout: float | None = None) -> AsyncJob:
        """Follow the job's events until it is over; returns it as it ended. ``Timeout`` after
        ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout(f"job {self.id} is still {self.status} after {timeout}s")
            async for event in self._client.watch(self.id, self.last_seq, timeout=left):
                if event.terminal:
                    break
            await self.refresh()
        return self

    async def result(self) -> JobResult:
        """The result of a SUCCEEDED job; ``Conflict`` (409) for any other."""
        return JobResult.from_json(await self._client._send(routes.result(self.id)))

    async def cancel(self) -> AsyncJob:
        """Cancel the job (``Conflict`` once it is over); returns it, CANCELLED."""
        self._update(await self._client._send(routes.cancel(self.id)))
        return self

    def watch(self, from_seq: int = 0, *, timeout: float | None = None) -> AsyncIterator[JobEvent]:
        """The job's events after ``from_seq`` (0: all), live until its final event."""
        return self._client.watch(self.id, from_seq, timeout=timeout)


class AsyncClient:
    """``Client`` for asyncio: the same arguments, environment and behaviour, with coroutine
    methods. Close it with ``await client.aclose()``, or use ``async with``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        grpc_target: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        max_retries: int = 2,
        watch_retries: int = WATCH_RETRIES,
        grpc_credentials: grpc.ChannelCredentials | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, grpc_target)
        self.timeout = timeout
        self._policy = RetryPolicy(max_retries=max_retries)
        self._watch_retries = watch_retries
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._http.base_url = httpx.URL(self.config.url)
        self._http.headers.update(headers_for(self.config.api_key))
        self._credentials = channel_credentials(self.config, grpc_credentials)
        self._metadata = tuple((k.lower(), v) for k, v in headers_for(self.config.api_key).items())
        self._channel: grpc.aio.Channel | None = None  # made on the first watch, in its loop

    # ------------------------------------------------------------ plumbing

    async def aclose(self) -> None:
        """Close the HTTP connections and the gRPC channel (safe to call twice)."""
        await self._http.aclose()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: routes.Call) -> Any:
        """Send ``call`` (again, while the retry policy says so); its decoded answer."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    content=call.content,
                    headers=call.headers,
                    timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                pause = retry_pause(self._policy, call, attempt, None)
                if pause is None:
                    raise transport_error(exc, self.config.url) from exc
            else:
                pause = retry_pause(self._policy, call, attempt, response)
                if pause is None:
                    return decode(response, call)
            await asyncio.sleep(pause)
            attempt += 1

    def _job_service(self) -> jobs_pb2_grpc.JobServiceStub:
        if self._channel is None:
            target = self.config.grpc_target
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    target, self._credentials, options=CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        return jobs_pb2_grpc.JobServiceStub(self._channel)

    # ------------------------------------------------------------ jobs

    async def submit(
        self,
        job: Mapping[str, Any] | ProgramItem | Sequence[ProgramItem],
        *,
        bindings: Sequence[Binding] | None = None,
        observables: Sequence[str] | None = None,
        result: str | None = None,
        shots: int | None = None,
        pool: str | Sequence[str] | None = None,
        name: str | None = None,
        max_cost_usd: float | None = None,
        max_queue_s: float | None = None,
        cutting: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        """``Client.submit``: a job spec, or programs with the options of a circuits job."""
        options: dict[str, Any] = {
            "bindings": bindings,
            "observables": observables,
            "result": result,
            "shots": shots,
            "pool": pool,
            "name": name,
            "max_cost_usd": max_cost_usd,
            "max_queue_s": max_queue_s,
            "cutting": cutting,
        }
        spec = job_spec(job, options)
        key = idempotency_key or str(uuid.uuid4())
        return AsyncJob._of(self, await self._send(routes.submit(spec, key)))

    async def train(
        self,
        spec: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> AsyncJob:
        """Submit a ``train`` job: ``spec`` and ``fields`` over it."""
        job = optimisation_spec("train", spec, fields)
        return await self.submit(job, idempotency_key=idempotency_key)

    async def minimize(
        self,
        spec: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> AsyncJob:
        """Submit a ``minimize`` job: ``spec`` and ``fields`` over it."""
        job = optimisation_spec("minimize", spec, fields)
        return await self.submit(job, idempotency_key=idempotency_key)

    async def job(self, job_id: str) -> AsyncJob:
        return AsyncJob._of(self, await self._send(routes.job(job_id)))

    async def jobs(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[AsyncJob]:
        data = await self._send(routes.jobs(status, limit, offset))
        return Page.read(data, lambda row: AsyncJob._of(self, row))

    async def result(self, job_id: str) -> JobResult:
        return JobResult.from_json(await self._send(routes.result(job_id)))

    async def cancel(self, job_id: str) -> AsyncJob:
        return AsyncJob._of(self, await self._send(routes.cancel(job_id)))

    async def watch(
        self, job_id: str, from_seq: int = 0, *, timeout: float | None = None
    ) -> AsyncIterator[JobEvent]:
        """``Client.watch``: events after ``from_seq``, resumed after a dropped stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        resume = Resumption(from_seq, self._watch_retries, deadline)
        stub = self._job_service()
        while True:
            request = jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=resume.last_seq)
            call = stub.WatchJob(request, metadata=self._metadata, timeout=resume.remaining())
            try:
                async for message in call:
                    event = JobEvent.from_proto(message)
                    resume.seen(event)
                    yield event
                return
            except grpc.aio.AioRpcError as exc:
                pause = resume.pause_after(exc.code(), exc.details() or "")
            finally:
                call.cancel()
            await asyncio.sleep(pause)

    # ------------------------------------------------------------ training

    async def metrics(self, job_id: str) -> Metrics:
        return Metrics.from_json(await self._send(routes.metrics(job_id)))

    async def checkpoint(self, job_id: str) -> Checkpoint:
        return Checkpoint.from_json(await self._send(routes.checkpoint(job_id)))

    async def predict(self, job_id: str, samples: Sequence[Sequence[float]]) -> Predictions:
        timeout = max(self.timeout, PREDICT_TIMEOUT_S)
        return Predictions.from_json(await self._send(routes.predict(job_id, samples, timeout)))

    async def upload_dataset(
        self, csv_text: str, name: str = "", label_column: str = "label"
    ) -> Dataset:
        call = routes.upload_dataset(csv_text, name, label_column)
        return Dataset.from_json(await self._send(call))

    async def datasets(self, limit: int = 50, offset: int = 0) -> Page[Dataset]:
        return Page.read(await self._send(routes.datasets(limit, offset)), Dataset.from_json)

    async def dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(await self._send(routes.dataset(dataset_id)))

    # ------------------------------------------------------------ nodes and pools

    async def nodes(self, pool: str | None = None) -> Page[Node]:
        return Page.read(await self._send(routes.nodes(pool)), Node.from_json)

    async def pools(self) -> Page[Pool]:
        return Page.read(await self._send(routes.pools()), Pool.from_json)

    async def enroll_node(self, pool: str, name: str = "") -> EnrolledNode:
        return EnrolledNode.from_json(await self._send(routes.enroll_node(pool, name)))

    async def node_credentials(
        self, pool: str | None = None, revoked: bool = False
    ) -> Page[NodeCredential]:
        data = await self._send(routes.node_credentials(pool, revoked))
        return Page.read(data, NodeCredential.from_json)

    async def revoke_node(self, credential_id: str) -> NodeCredential:
        return NodeCredential.from_json(await self._send(routes.revoke_node(credential_id)))

    # ------------------------------------------------------------ keys and tenants

    async def create_key(
        self, tenant: str, scopes: Sequence[str] = ("read", "submit"), name: str = ""
    ) -> CreatedKey:
        return CreatedKey.from_json(await self._send(routes.create_key(tenant, scopes, name)))

    async def keys(self) -> Page[ApiKey]:
        return Page.read(await self._send(routes.keys()), ApiKey.from_json)

    async def revoke_key(self, key_id: str) -> ApiKey:
        return ApiKey.from_json(await self._send(routes.revoke_key(key_id)))

    async def rotate_admin_key(self) -> RotatedAdminKey:
        return RotatedAdminKey.from_json(await self._send(routes.rotate_admin_key()))

    async def tenant(self, tenant: str) -> Tenant:
        return Tenant.from_json(await self._send(routes.tenant(tenant)))

    async def set_tenant(self, tenant: str, **changes: Any) -> Tenant:
        return Tenant.from_json(await self._send(routes.set_tenant(tenant, changes)))

    # ------------------------------------------------------------ health

    async def healthz(self) -> bool:
        return bool((await self._send(routes.healthz())).get("status") == "ok")

    async def readyz(self) -> Readiness:
        return Readiness.from_json(await self._send(routes.readyz()))
