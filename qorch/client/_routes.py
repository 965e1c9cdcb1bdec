"""Every REST route of the API, as the request to send: one place for paths, parameters and
whether a request may be sent again. ``Client`` and ``AsyncClient`` send them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Call:
    """One request. ``retry``: sending it again cannot do the work twice (a read, a revocation,
    a submission with its Idempotency-Key), so a failed attempt may be repeated. ``answers``:
    error statuses whose body is the answer (``/readyz``'s 503)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None
    retry: bool = False
    answers: frozenset[int] = frozenset()


def _part(value: str) -> str:
    """A path segment: an id with a slash or a space cannot reach another route."""
    return quote(str(value), safe="")


def _read(path: str, params: Mapping[str, Any] | None = None) -> Call:
    return Call("GET", path, params=params, retry=True)


# ---------------------------------------------------------------- jobs


def submit(spec: Mapping[str, Any], idempotency_key: str) -> Call:
    """POST /v1/jobs: 201 with the new job, or 200 with the job an earlier submission with
    the same key stored."""
    headers = {"Idempotency-Key": idempotency_key}
    return Call("POST", "/v1/jobs", json=dict(spec), headers=headers, retry=True)


def job(job_id: str) -> Call:
    return _read(f"/v1/jobs/{_part(job_id)}")


def jobs(status: str | None, limit: int, offset: int) -> Call:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    return _read("/v1/jobs", params)


def result(job_id: str) -> Call:
    return _read(f"/v1/jobs/{_part(job_id)}/result")


def cancel(job_id: str) -> Call:
    return Call("POST", f"/v1/jobs/{_part(job_id)}/cancel")


def metrics(job_id: str) -> Call:
    return _read(f"/v1/jobs/{_part(job_id)}/metrics")


def checkpoint(job_id: str) -> Call:
    return _read(f"/v1/jobs/{_part(job_id)}/checkpoint")


def predict(job_id: str, samples: Sequence[Sequence[float]], timeout: float) -> Call:
    """Not sent again: each call runs a ``predict`` job on the nodes."""
    body = {"samples": [list(map(float, row)) for row in samples]}
    return Call("POST", f"/v1/jobs/{_part(job_id)}/predict", json=body, timeout=timeout)


# ---------------------------------------------------------------- datasets


def upload_dataset(csv_text: str, name: str, label_column: str) -> Call:
    return Call(
        "POST",
        "/v1/datasets",
        content=csv_text.encode(),
        headers={"Content-Type": "text/csv"},
        params={"name": name, "label_column": label_column},
    )


def datasets(limit: int, offset: int) -> Call:
    return _read("/v1/datasets", {"limit": limit, "offset": offset})


def dataset(dataset_id: str) -> Call:
    return _read(f"/v1/datasets/{_part(dataset_id)}")


# ---------------------------------------------------------------- nodes and pools


def nodes(pool: str | None) -> Call:
    return _read("/v1/nodes", {"pool": pool} if pool else None)


def pools() -> Call:
    return _read("/v1/pools")


def enroll_node(pool: str, name: str) -> Call:
    return Call("POST", "/v1/nodes/credentials", json={"pool": pool, "name": name})


def node_credentials(pool: str | None, revoked: bool) -> Call:
    params: dict[str, Any] = {"revoked": revoked}
    if pool:
        params["pool"] = pool
    return _read("/v1/nodes/credentials", params)


def revoke_node(credential_id: str) -> Call:
    """Revoking twice is fine: safe to send again."""
    return Call("DELETE", f"/v1/nodes/credentials/{_part(credential_id)}", retry=True)


# ---------------------------------------------------------------- keys and tenants


def create_key(tenant: str, scopes: Sequence[str], name: str) -> Call:
    body = {"tenant": tenant, "scopes": list(scopes), "name": name}
    return Call("POST", "/v1/keys", json=body)


def keys() -> Call:
    return _read("/v1/keys")


def revoke_key(key_id: str) -> Call:
    """Revoking twice is fine: safe to send again."""
    return Call("DELETE", f"/v1/keys/{_part(key_id)}", retry=True)


def rotate_admin_key() -> Call:
    """Never sent again: a repeat would revoke the key the first one made."""
    return Call("POST", "/v1/keys/rotate-admin")


def tenant(name: str) -> Call:
    return _read(f"/v1/tenants/{_part(name)}")


def set_tenant(name: str, changes: Mapping[str, Any]) -> Call:
    """Setting the same values twice is the same: safe to send again."""
    return Call("PATCH", f"/v1/tenants/{_part(name)}", json=dict(changes), retry=True)


# ---------------------------------------------------------------- health


def healthz() -> Call:
    return _read("/healthz")


def readyz() -> Call:
    return Call("GET", "/readyz", retry=False, answers=frozenset({503}))
