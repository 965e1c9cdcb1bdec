"""``QorchClient``: the client of the first releases, kept for the tests and benches written
against it. It sends ``Client``'s requests (the same routes and typed errors) and answers with
the JSON as the API sent it. As before, it sends nothing twice, a connection error is httpx's
own, and ``watch`` is one raw ``WatchJob`` stream (protobuf events, ``grpc.RpcError``, no
resumption). New code uses ``qorch.client.Client``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import httpx

from proto.qorch.v1 import jobs_pb2
from qorch.client import _routes as routes
from qorch.client._errors import ConnectionFailed, Timeout
from qorch.client._specs import given_spec
from qorch.client._sync import Client
from qorch.client._transport import DEFAULT_TIMEOUT_S, PREDICT_TIMEOUT_S

T = TypeVar("T")


def _httpx_errors(send: Callable[[], T]) -> T:
    """``send()``, with a connection error raised as httpx raised it (as this client did)."""
    try:
        return send()
    except (ConnectionFailed, Timeout) as exc:
        if isinstance(exc.__cause__, httpx.TransportError):
            raise exc.__cause__ from None
        raise


class QorchClient:
    """REST and gRPC access to one qorchestra API, answering with the API's JSON."""

    def __init__(
        self,
        api_url: str,
        grpc_target: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str = "",
        grpc_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.sdk = Client(
            api_url,
            api_key,
            grpc_target,
            timeout,
            max_retries=0,
            grpc_credentials=grpc_credentials,
        )

    def close(self) -> None:
        self.sdk.close()

    def __enter__(self) -> QorchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, call: routes.Call) -> dict[str, Any]:
        answer: dict[str, Any] = _httpx_errors(lambda: self.sdk._send(call))
        return answer

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /v1/jobs (with an ``Idempotency-Key``, by default a new UUID)."""
        job = _httpx_errors(
            lambda: self.sdk.submit(given_spec(spec, {}), idempotency_key=idempotency_key)
        )
        return job.to_dict()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(routes.job(job_id))

    def jobs(self, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        return self._json(routes.jobs(status, limit, 0))

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json(routes.result(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(routes.cancel(job_id))

    def metrics(self, job_id: str) -> dict[str, Any]:
        return self._json(routes.metrics(job_id))

    def checkpoint(self, job_id: str) -> dict[str, Any]:
        return self._json(routes.checkpoint(job_id))

    def predict(self, job_id: str, samples: list[list[float]]) -> dict[str, Any]:
        timeout = max(self.sdk.timeout, PREDICT_TIMEOUT_S)
        return self._json(routes.predict(job_id, samples, timeout))

    def upload_dataset(
        self, csv_text: str, name: str = "", label_column: str = "label"
    ) -> dict[str, Any]:
        return self._json(routes.upload_dataset(csv_text, name, label_column))

    def nodes(self) -> dict[str, Any]:
        return self._json(routes.nodes(None))

    def pools(self) -> dict[str, Any]:
        return self._json(routes.pools())

    def watch(
        self, job_id: str, from_seq: int = 0, timeout: float | None = None
    ) -> Iterator[jobs_pb2.JobEvent]:
        """One ``WatchJob`` stream: protobuf events after ``from_seq`` until the final one;
        ``grpc.RpcError`` when it fails (DEADLINE_EXCEEDED after ``timeout`` seconds)."""
        return self.sdk._watch_once(job_id, from_seq, timeout)

    def create_key(self, tenant: str, scopes: list[str], name: str = "") -> dict[str, Any]:
        return self._json(routes.create_key(tenant, scopes, name))

    def rotate_admin_key(self) -> dict[str, Any]:
        return self._json(routes.rotate_admin_key())

    def keys(self) -> dict[str, Any]:
        return self._json(routes.keys())

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._json(routes.revoke_key(key_id))

    def enroll_node(self, pool: str, name: str = "") -> dict[str, Any]:
        return self._json(routes.enroll_node(pool, name))

    def node_credentials(self, pool: str | None = None, revoked: bool = False) -> dict[str, Any]:
        return self._json(routes.node_credentials(pool, revoked))

    def revoke_node(self, credential_id: str) -> dict[str, Any]:
        return self._json(routes.revoke_node(credential_id))

    def tenant(self, tenant: str) -> dict[str, Any]:
        return self._json(routes.tenant(tenant))

    def set_tenant(self, tenant: str, quotas: dict[str, Any]) -> dict[str, Any]:
        return self._json(routes.set_tenant(tenant, quotas))
