"""gRPC errors say what the caller did wrong, or that the service cannot answer now, and
nothing about how the service is built: no SQL, driver names, hosts, ports or tracebacks.
A real API (HTTP and gRPC over TCP), real Postgres and broker; the outage drops the API's own
database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.samples import demo_job
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        running.keys["owner"] = running.new_key("grpc-owner", ["read", "submit"])
        running.keys["other"] = running.new_key("grpc-other", ["read"])
        yield running


def _internals(api: RunningApi) -> list[str]:
    """What no error detail may contain: SQL, the driver and ORM, tracebacks, and where the
    database and the broker are."""
    db = make_url(api.settings.database_url)
    found = [r"\bSELECT\b", r"\bFROM jobs\b", "sqlalchemy", "psycopg", "Traceback", 'File "']
    found += [re.escape(f"{db.host}:{db.port}"), re.escape(f"port {db.port}")]
    found += [re.escape(address) for address in api.settings.kafka_bootstrap.split(",")]
    if db.host:
        found.append(re.escape(db.host))
    return found


def _error(call: Any, request: object, key: str) -> grpc.RpcError:
    """The error ``call`` ends with (a stream is read to its end)."""
    metadata = (("authorization", f"Bearer {key}"),)
    try:
        answer = call(request, metadata=metadata, timeout=30)
        if not isinstance(answer, jobs_pb2.Job):
            list(answer)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{request!r} succeeded")


def _submit(api: RunningApi, key: str) -> str:
    answer = api.call("POST", "/v1/jobs", key, json=demo_job(2))
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def _cancel(api: RunningApi, job_id: str) -> None:
    """Finish it, so no planner of another module runs it."""
    assert api.call("POST", f"/v1/jobs/{job_id}/cancel", api.admin_key).status_code == 200


def test_error_details_carry_no_internals(api: RunningApi) -> None:
    owner = api.keys["owner"]
    job_id = _submit(api, owner)
    try:
        with grpc.insecure_channel(api.grpc_target) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            watch, get = jobs_pb2.WatchJobRequest, jobs_pb2.GetJobRequest
            cases: list[tuple[Any, Any, str, grpc.StatusCode]] = [
                (stub.GetJob, get(job_id="not-a-uuid"), owner, grpc.StatusCode.INVALID_ARGUMENT),
                (stub.WatchJob, watch(job_id="x" * 5000), owner, grpc.StatusCode.INVALID_ARGUMENT),
                (stub.GetJob, get(job_id=UNKNOWN_JOB), owner, grpc.StatusCode.NOT_FOUND),
                (stub.WatchJob, watch(job_id=UNKNOWN_JOB), owner, grpc.StatusCode.NOT_FOUND),
                (stub.GetJob, get(job_id=job_id), api.keys["other"], grpc.StatusCode.NOT_FOUND),
                (stub.WatchJob, watch(job_id=job_id), api.keys["other"], grpc.StatusCode.NOT_FOUND),
            ]
            # seqs are 32-bit in the store: past that, the database itself would refuse it
            for from_seq in (2**31, 2**32 + 1, 2**63, 2**64 - 1):
                request = watch(job_id=job_id, from_seq=from_seq)
                cases.append((stub.WatchJob, request, owner, grpc.StatusCode.INVALID_ARGUMENT))
            for call, request, key, code in cases:
                error = _error(call, request, key)
                assert error.code() == code, (request, error.details())
                details = error.details() or ""
                for pattern in _internals(api):
                    assert not re.search(pattern, details, re.IGNORECASE), (request, details)
            huge = _error(stub.WatchJob, watch(job_id=job_id, from_seq=2**31), owner)
            assert huge.details() == f"from_seq must be at most {2**31 - 1}"
    finally:
        _cancel(api, job_id)


def test_the_largest_stored_seq_is_a_valid_from_seq(api: RunningApi) -> None:
    """2**31 - 1 is still a seq the store can compare with: a from_seq past the end, which
    follows the job (here: cancelled, so the stream ends at once)."""
    job_id = _submit(api, api.keys["owner"])
    _cancel(api, job_id)
    metadata = (("authorization", f"Bearer {api.keys['owner']}"),)
    with grpc.insecure_channel(api.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        request = jobs_pb2.WatchJobRequest(job_id=job_id, from_seq=2**31 - 1)
        assert list(stub.WatchJob(request, metadata=metadata, timeout=30)) == []


def test_a_database_outage_is_unavailable_without_internals(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    with running_api(fresh_database, kafka_bootstrap) as api:
        key = api.new_key("outage", ["read", "submit"])
        job_id = _submit(api, key)
        url = make_url(fresh_database)
        admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
        if url.password:
            admin += f" password={url.password}"
        with psycopg.connect(admin, autocommit=True) as conn:  # the API's database is gone
            conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        # REST says so too (api/errors.py), with a 503
        assert api.call("GET", f"/v1/jobs/{job_id}", key).status_code == 503
        with grpc.insecure_channel(api.grpc_target) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            requests = [
                (stub.GetJob, jobs_pb2.GetJobRequest(job_id=job_id)),
                (stub.WatchJob, jobs_pb2.WatchJobRequest(job_id=job_id)),
                (stub.WatchJob, jobs_pb2.WatchJobRequest(job_id=str(uuid.uuid4()), from_seq=3)),
            ]
            for call, request in requests:
                error = _error(call, request, key)
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                assert error.details() == "database unavailable"
                for pattern in _internals(api):
                    assert not re.search(pattern, error.details() or "", re.IGNORECASE)
