"""Secrets never appear in logs: the whole stack, logging at DEBUG, with a database password,
a Kafka SASL password and API keys in play, and callers that get it wrong (a wrong key, a
revoked key, a bad job); afterwards no service's log holds any of them in full."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import make_url

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.samples import demo_job
from qorch.stack import Stack
from qorchestra.apikeys import generate_key
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ADMIN_KEY = generate_key()
#: librdkafka takes sasl.password on a plaintext listener and does not use it.
KAFKA_PASSWORD = "kafka-" + secrets.token_urlsafe(16)


def _with_password(url: str) -> tuple[str, str]:
    """``url`` with a password, and that password (the embedded Postgres trusts local logins,
    so one is made up; a test server's own is kept)."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    password = "pg-" + secrets.token_urlsafe(16)
    return parsed.set(password=password).render_as_string(hide_password=False), password


@pytest.fixture(scope="module")
def db_password(database_url: str) -> tuple[str, str]:
    return _with_password(database_url)


@pytest.fixture(scope="module")
def stack(
    db_password: tuple[str, str], kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    url, _ = db_password
    with running_stack(
        url,
        kafka_bootstrap,
        tmp_path_factory,
        admin_key=ADMIN_KEY,
        kafka_extra={"sasl.password": KAFKA_PASSWORD},
        log_level="DEBUG",
    ) as stack:
        yield stack


def _exercise(stack: Stack) -> str:
    """Use the stack as tenants do, mistakes included; returns the tenant's key."""
    with httpx.Client(base_url=stack.api_url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        made = http.post(
            "/v1/keys", headers=admin, json={"tenant": "leaky", "scopes": ["read", "submit"]}
        )
        assert made.status_code == 201, made.text
        tenant_key: str = made.json()["key"]
        tenant = {"Authorization": f"Bearer {tenant_key}"}
        job = http.post("/v1/jobs", headers=tenant, json=demo_job(2))
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        wait_until(
            lambda: http.get(f"/v1/jobs/{job_id}", headers=tenant).json()["status"] == "SUCCEEDED",
            timeout=120,
            what="the job to succeed",
        )
        bad = demo_job(2)
        bad["programs"][0]["source"] += "nonsense;\n"
        assert http.post("/v1/jobs", headers=tenant, json=bad).status_code == 422
        wrong = {"Authorization": f"Bearer {generate_key()}"}
        assert http.get("/v1/jobs", headers=wrong).status_code == 401
        spare = http.post("/v1/keys", headers=admin, json={"tenant": "leaky"}).json()
        assert http.delete(f"/v1/keys/{spare['id']}", headers=admin).status_code == 200
        revoked = {"Authorization": f"Bearer {spare['key']}"}
        assert http.get("/v1/jobs", headers=revoked).status_code == 401
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {tenant_key}"),)
        assert stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata).job_id
    return tenant_key


def test_no_log_holds_a_key_or_a_password(stack: Stack, db_password: tuple[str, str]) -> None:
    tenant_key = _exercise(stack)
    stack.stop()  # every service flushes and closes its log
    _, password = db_password
    logs = {s.name: Path(s.log_path).read_text() for s in stack.services if s.log_path}
    assert set(logs) >= {"api", "orchestrator", "node-1", "node-2"}
    assert all(logs.values()) and any(" DEBUG " in text for text in logs.values())
    secrets_in_play = {
        "the admin key": ADMIN_KEY,
        "the tenant's key": tenant_key,
        "the database password": password,
        "the Kafka password": KAFKA_PASSWORD,
    }
    for name, text in logs.items():
        for what, secret in secrets_in_play.items():
            assert secret not in text, f"{what} is in {name}'s log"
