"""Client side of the CLI: REST calls and the gRPC watch stream. Talks only HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc

TERMINAL_EVENTS = {
    jobs_pb2.JOB_STATUS_SUCCEEDED,
    jobs_pb2.JOB_STATUS_FAILED,
    jobs_pb2.JOB_STATUS_CANCELLED,
}


class ApiError(RuntimeError):
    """The API refused a request; the message carries its reason."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {format_detail(detail)}")
        self.status = status
        self.detail = detail


def format_detail(detail: Any) -> str:
    """A readable form of FastAPI's ``detail`` (a string or a list of field errors)."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}" for item in detail
        )
    return str(detail)


class QorchClient:
    """REST and gRPC access to one qorchestra API. ``grpc_credentials`` (e.g.
    ``grpc.ssl_channel_credentials(ca_pem)``) makes the gRPC calls use TLS."""

    def __init__(
        self,
        api_url: str,
        grpc_target: str,
        timeout: float = 30.0,
        api_key: str = "",
        grpc_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=api_url, timeout=timeout, headers=headers)
        self._grpc_target = grpc_target
        self._grpc_credentials = grpc_credentials
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    def _channel(self) -> grpc.Channel:
        """A channel to the gRPC server: TLS with ``grpc_credentials``, plaintext without."""
        if self._grpc_credentials is not None:
            return grpc.secure_channel(self._grpc_target, self._grpc_credentials)
        return grpc.insecure_channel(self._grpc_target)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QorchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/jobs; returns the created job. Its ``warnings`` say what the submitter
        should know, e.g. that no live node agent serves its pool (the job waits for one)."""
        result: dict[str, Any] = self._call("POST", "/v1/jobs", json=spec)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def jobs(self, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        result: dict[str, Any] = self._call("GET", "/v1/jobs", params=params)
        return result

    def result(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/result")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def metrics(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}/metrics: a training job's step and epoch history."""
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/metrics")
        return result

    def checkpoint(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}/checkpoint: a training job's latest state."""
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/checkpoint")
        return result

    def predict(self, job_id: str, samples: list[list[float]]) -> dict[str, Any]:
        """POST /v1/jobs/{id}/predict: classes and probabilities from a trained model."""
        timeout = max(self._http.timeout.read or 30.0, 120.0)
        result: dict[str, Any] = self._call(
            "POST", f"/v1/jobs/{job_id}/predict", json={"samples": samples}, timeout=timeout
        )
        return result

    def upload_dataset(
        self, csv_text: str, name: str = "", label_column: str = "label"
    ) -> dict[str, Any]:
        """POST /v1/datasets with a CSV body."""
        result: dict[str, Any] = self._call(
            "POST",
            "/v1/datasets",
            content=csv_text.encode(),
            headers={"Content-Type": "text/csv"},
            params={"name": name, "label_column": label_column},
        )
        return result

    def nodes(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/nodes")
        return result

    def pools(self) -> dict[str, Any]:
        """GET /v1/pools: every known pool, its live agents and its waiting work."""
        result: dict[str, Any] = self._call("GET", "/v1/pools")
        return result

    def watch(
        self, job_id: str, from_seq: int = 0, timeout: float | None = None
    ) -> Iterator[jobs_pb2.JobEvent]:
        """Stream the job's events after ``from_seq`` until its final event; with ``timeout``
        (seconds) the stream ends with ``grpc.RpcError`` (DEADLINE_EXCEEDED) after that long."""
        with self._channel() as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            request = jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=from_seq)
            yield from stub.WatchJob(request, metadata=self._metadata, timeout=timeout)

    def create_key(self, tenant: str, scopes: list[str], name: str = "") -> dict[str, Any]:
        """POST /v1/keys (admin): a new key; the answer's ``key`` is shown only this once."""
        body = {"tenant": tenant, "scopes": scopes, "name": name}
        result: dict[str, Any] = self._call("POST", "/v1/keys", json=body)
        return result

    def rotate_admin_key(self) -> dict[str, Any]:
        """POST /v1/keys/rotate-admin (admin): a new configured admin key, shown only this
        once; the one it replaces is revoked."""
        result: dict[str, Any] = self._call("POST", "/v1/keys/rotate-admin")
        return result

    def keys(self) -> dict[str, Any]:
        """GET /v1/keys (admin): every key, by prefix."""
        result: dict[str, Any] = self._call("GET", "/v1/keys")
        return result

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """DELETE /v1/keys/{id} (admin)."""
        result: dict[str, Any] = self._call("DELETE", f"/v1/keys/{key_id}")
        return result

    def enroll_node(self, pool: str, name: str = "") -> dict[str, Any]:
        """POST /v1/nodes/credentials (admin): a node credential for an agent of ``pool``; the
        answer's ``credential`` is shown only this once."""
        body = {"pool": pool, "name": name}
        result: dict[str, Any] = self._call("POST", "/v1/nodes/credentials", json=body)
        return result

    def node_credentials(self, pool: str | None = None, revoked: bool = False) -> dict[str, Any]:
        """GET /v1/nodes/credentials (admin): node credentials, without their secrets."""
        params: dict[str, Any] = {"revoked": revoked}
        if pool:
            params["pool"] = pool
        result: dict[str, Any] = self._call("GET", "/v1/nodes/credentials", params=params)
        return result

    def revoke_node(self, credential_id: str) -> dict[str, Any]:
        """DELETE /v1/nodes/credentials/{id} (admin): its results stop counting at once."""
        result: dict[str, Any] = self._call("DELETE", f"/v1/nodes/credentials/{credential_id}")
        return result

    def tenant(self, tenant: str) -> dict[str, Any]:
        """GET /v1/tenants/{tenant}: quotas, budget and spend."""
        result: dict[str, Any] = self._call("GET", f"/v1/tenants/{tenant}")
        return result

    def set_tenant(self, tenant: str, quotas: dict[str, Any]) -> dict[str, Any]:
        """PATCH /v1/tenants/{tenant} (admin): change quotas and budget."""
        result: dict[str, Any] = self._call("PATCH", f"/v1/tenants/{tenant}", json=quotas)
        return result
