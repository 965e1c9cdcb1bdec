"""``Client``: the API over REST (httpx) and gRPC (``WatchJob``), with typed answers and
errors, and ``Job``, a handle on one job."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
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


class Job(JobState):
    """A job, as the API last showed it, and what can be done with it: ``refresh``, ``wait``,
    ``result``, ``cancel``, ``watch``."""

    _client: Client

    @classmethod
    def _of(cls, client: Client, data: Mapping[str, Any]) -> Job:
        job = cls(**JobState.fields(data))
        job._client = client
        job._keep(data)
        return job

    def refresh(self) -> Job:
        """Read the job again; returns it."""
        self._update(self._client._send(routes.job(self.id)))
        return self

    def wait(self, timeout: float | None = None) -> Job:
        """Follow the job's events (``WatchJob``, resumed when dropped) until it is over, and
        return it as it ended (SUCCEEDED, FAILED or CANCELLED: see ``status`` and ``error``).
        Timeout after ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout(f"job {self.id} is still {self.status} after {timeout}s")
            for event in self._client.watch(self.id, self.last_seq, timeout=left):
                if event.terminal:
                    break
            self.refresh()
        return self

    def result(self) -> JobResult:
        """The result of a SUCCEEDED job; ``Conflict`` (409) for any other."""
        return JobResult.from_json(self._client._send(routes.result(self.id)))

    def cancel(self) -> Job:
        """Cancel the job (``Conflict`` once it is over); returns it, CANCELLED."""
        self._update(self._client._send(routes.cancel(self.id)))
        return self

    def watch(self, from_seq: int = 0, *, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events after ``from_seq`` (0: all), live until its final event."""
        return self._client.watch(self.id, from_seq, timeout=timeout)


class Client:
    """A qorchestra API, over REST and gRPC.

    ``url``, ``api_key`` and ``grpc_target`` default to ``QORCH_API_URL``, ``QORCH_API_KEY``
    and ``QORCH_GRPC_TARGET`` (as for the ``qorch`` command; gRPC uses TLS with
    ``QORCH_GRPC_TLS`` or ``QORCH_GRPC_TLS_CA_FILE``, or with ``grpc_credentials``). Requests
    that can be repeated safely (reads, and submissions, which carry an ``Idempotency-Key``)
    are retried ``max_retries`` times after a connection error or a 502/503/504. Errors are
    ``qorch.client`` exceptions: ``ApiError`` subclasses by status, ``ConnectionFailed``,
    ``Timeout``. ``http_client``: an ``httpx.Client`` of your own to send with (a transport,
    proxies, certificates, timeouts); it gets the base URL and the key's header, and is closed
    with this client. Close it, or use it as a context manager."""

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
        http_client: httpx.Client | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, grpc_target)
        self.timeout = timeout
        self._policy = RetryPolicy(max_retries=max_retries)
        self._watch_retries = watch_retries
        self._http = http_client or httpx.Client(timeout=timeout)
        self._http.base_url = httpx.URL(self.config.url)
        self._http.headers.update(headers_for(self.config.api_key))
        self._credentials = channel_credentials(self.config, grpc_credentials)
        self._metadata = tuple((k.lower(), v) for k, v in headers_for(self.config.api_key).items())
        self._lock = threading.Lock()  # guards the channel, made on the first watch
        self._channel: grpc.Channel | None = None

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the HTTP connections and the gRPC channel (safe to call twice)."""
        self._http.close()
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: routes.Call) -> Any:
        """Send ``call`` (again, while the retry policy says so); its decoded answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(pause)
            attempt += 1

    def _job_service(self) -> jobs_pb2_grpc.JobServiceStub:
        with self._lock:
            if self._channel is None:
                target = self.config.grpc_target
                if self._credentials is not None:
                    self._channel = grpc.secure_channel(
                        target, self._credentials, options=CHANNEL_OPTIONS
                    )
                else:
                    self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            return jobs_pb2_grpc.JobServiceStub(self._channel)

    # ------------------------------------------------------------ jobs

    def submit(
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
    ) -> Job:
        """Submit a job; returns it (QUEUED, with ``warnings`` the submitter should know).

        ``job`` is a whole job spec (a mapping, of any kind: ``circuits``, ``train``,
        ``minimize``), or the programs of a circuits job: OpenQASM 3 text, a Braket
        ``Circuit``, a Qiskit ``QuantumCircuit``, or a list of them, each possibly paired with
        bindings of its own (``(program, [binding, ...])``). ``bindings`` give values to the
        programs' inputs (keys: input names, or the circuit's parameters); the other options
        are the job's fields, and ``result`` is by default ``expectation`` with
        ``observables``, else ``counts`` with ``shots``, else ``probabilities``.

        The submission carries ``idempotency_key`` (by default a new UUID), also when it is
        sent again after a failed attempt: the API stores one job per key, so a retry never
        makes a second one."""
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
        return Job._of(self, self._send(routes.submit(spec, key)))

    def train(
        self,
        spec: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Submit a ``train`` job: ``spec`` (e.g. ``examples/moons-classifier.json``) and
        ``fields`` over it (``data=``, ``model=``, ``training=``, ``pool=``, ``seed=``...)."""
        job = optimisation_spec("train", spec, fields)
        return self.submit(job, idempotency_key=idempotency_key)

    def minimize(
        self,
        spec: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Submit a ``minimize`` job (VQE, QAOA): ``spec`` and ``fields`` over it
        (``hamiltonian=``, ``ansatz=``, ``steps=``...)."""
        job = optimisation_spec("minimize", spec, fields)
        return self.submit(job, idempotency_key=idempotency_key)

    def job(self, job_id: str) -> Job:
        """One job of the key's tenant (any tenant's for an admin)."""
        return Job._of(self, self._send(routes.job(job_id)))

    def jobs(self, status: str | None = None, limit: int = 50, offset: int = 0) -> Page[Job]:
        """A page of jobs, newest first, optionally only those in ``status``."""
        data = self._send(routes.jobs(status, limit, offset))
        return Page.read(data, lambda row: Job._of(self, row))

    def result(self, job_id: str) -> JobResult:
        """The result of a SUCCEEDED job; ``Conflict`` (409) for any other."""
        return JobResult.from_json(self._send(routes.result(job_id)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job; ``Conflict`` (409) once it is over."""
        return Job._of(self, self._send(routes.cancel(job_id)))

    def watch(
        self, job_id: str, from_seq: int = 0, *, timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """The job's events after ``from_seq`` (0: the whole history), then live ones, until
        its final event. A dropped stream is resumed after the last event seen, so none is
        missed or repeated (up to ``watch_retries`` failures in a row, with backoff).
        ``timeout``: seconds for the whole watch, then ``Timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        resume = Resumption(from_seq, self._watch_retries, deadline)
        stub = self._job_service()
        while True:
            request = jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=resume.last_seq)
            call = stub.WatchJob(request, metadata=self._metadata, timeout=resume.remaining())
            try:
                for message in call:
                    event = JobEvent.from_proto(message)
                    resume.seen(event)
                    yield event
                return
            except grpc.RpcError as exc:
                pause = resume.pause_after(exc.code(), exc.details() or "")
            finally:
                call.cancel()
            time.sleep(pause)

    def _watch_once(
        self, job_id: str, from_seq: int = 0, timeout: float | None = None
    ) -> Iterator[jobs_pb2.JobEvent]:
        """One ``WatchJob`` stream as it comes, ``grpc.RpcError`` and all (``QorchClient``)."""
        call = self._job_service().WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=from_seq),
            metadata=self._metadata,
            timeout=timeout,
        )
        try:
            yield from call
        finally:
            call.cancel()

    # ------------------------------------------------------------ training

    def metrics(self, job_id: str) -> Metrics:
        """A training job's step and epoch history so far."""
        return Metrics.from_json(self._send(routes.metrics(job_id)))

    def checkpoint(self, job_id: str) -> Checkpoint:
        """A training job's latest checkpoint; ``NotFound`` for jobs without one."""
        return Checkpoint.from_json(self._send(routes.checkpoint(job_id)))

    def predict(self, job_id: str, samples: Sequence[Sequence[float]]) -> Predictions:
        """Classify ``samples`` (raw feature rows) with the model a SUCCEEDED train job
        trained; runs on its pool (``GatewayTimeout`` when the nodes do not answer in time)."""
        timeout = max(self.timeout, PREDICT_TIMEOUT_S)
        return Predictions.from_json(self._send(routes.predict(job_id, samples, timeout)))

    def upload_dataset(self, csv_text: str, name: str = "", label_column: str = "label") -> Dataset:
        """Upload a CSV (a header row, numeric features and a label column) for train jobs."""
        return Dataset.from_json(self._send(routes.upload_dataset(csv_text, name, label_column)))

    def datasets(self, limit: int = 50, offset: int = 0) -> Page[Dataset]:
        """The tenant's datasets, newest first."""
        return Page.read(self._send(routes.datasets(limit, offset)), Dataset.from_json)

    def dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._send(routes.dataset(dataset_id)))

    # ------------------------------------------------------------ nodes and pools

    def nodes(self, pool: str | None = None) -> Page[Node]:
        """Node agents as last seen through their heartbeats (of ``pool``, or all)."""
        return Page.read(self._send(routes.nodes(pool)), Node.from_json)

    def pools(self) -> Page[Pool]:
        """Every pool the platform knows, with its live agents and waiting work."""
        return Page.read(self._send(routes.pools()), Pool.from_json)

    def enroll_node(self, pool: str, name: str = "") -> EnrolledNode:
        """(admin) A node credential for an agent of ``pool``; its secret is shown only here."""
        return EnrolledNode.from_json(self._send(routes.enroll_node(pool, name)))

    def node_credentials(
        self, pool: str | None = None, revoked: bool = False
    ) -> Page[NodeCredential]:
        """(admin) Node credentials, without their secrets."""
        data = self._send(routes.node_credentials(pool, revoked))
        return Page.read(data, NodeCredential.from_json)

    def revoke_node(self, credential_id: str) -> NodeCredential:
        """(admin) Revoke a node credential: what it signs stops counting at once."""
        return NodeCredential.from_json(self._send(routes.revoke_node(credential_id)))

    # ------------------------------------------------------------ keys and tenants

    def create_key(
        self, tenant: str, scopes: Sequence[str] = ("read", "submit"), name: str = ""
    ) -> CreatedKey:
        """(admin) A new API key of ``tenant``; its secret ``key`` is shown only here."""
        return CreatedKey.from_json(self._send(routes.create_key(tenant, scopes, name)))

    def keys(self) -> Page[ApiKey]:
        """(admin) Every API key, by prefix."""
        return Page.read(self._send(routes.keys()), ApiKey.from_json)

    def revoke_key(self, key_id: str) -> ApiKey:
        """(admin) Revoke a key: every later call with it is refused."""
        return ApiKey.from_json(self._send(routes.revoke_key(key_id)))

    def rotate_admin_key(self) -> RotatedAdminKey:
        """(admin) Replace the configured admin key; the new one is shown only here."""
        return RotatedAdminKey.from_json(self._send(routes.rotate_admin_key()))

    def tenant(self, tenant: str) -> Tenant:
        """A tenant's quotas, budget and spend (a key sees its own tenant only)."""
        return Tenant.from_json(self._send(routes.tenant(tenant)))

    def set_tenant(self, tenant: str, **changes: Any) -> Tenant:
        """(admin) Change quotas and budget (``max_concurrent_jobs=``, ``budget_usd=``...;
        None returns one to its default)."""
        return Tenant.from_json(self._send(routes.set_tenant(tenant, changes)))

    # ------------------------------------------------------------ health

    def healthz(self) -> bool:
        """Whether the API process answers."""
        return bool(self._send(routes.healthz()).get("status") == "ok")

    def readyz(self) -> Readiness:
        """Whether the API's dependencies (Postgres, Kafka) answer."""
        return Readiness.from_json(self._send(routes.readyz()))
