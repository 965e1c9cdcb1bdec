"""Who may do what, and the limits that protect the service, against the served API.

The auth matrix calls every /v1 route and the gRPC methods without a key, with a wrong and a
revoked key, with each scope, and across tenants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import update

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.samples import demo_job
from qorchestra.apikeys import generate_key
from qorchestra.store.db import make_engine, make_session_factory, session_scope
from qorchestra.store.models import Job, JobMetric, TrainingCheckpoint
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

CSV = "x,y,label\n0.1,0.9,a\n0.8,0.2,b\n0.2,0.7,a\n0.9,0.1,b\n"
#: label -> (tenant, scopes) of the keys the matrix calls with
CALLERS = {
    "read": ("acme", ["read"]),
    "submit": ("acme", ["submit"]),
    "read_submit": ("acme", ["read", "submit"]),
    "other_tenant": ("globex", ["read", "submit"]),
}
#: (method, path, scope needed, request keywords, answer to a caller allowed there). Objects
#: are acme's: {job} a QUEUED circuits job, {train} a QUEUED train job with a checkpoint and a
#: metric in the store, {fresh} a QUEUED circuits job made anew for each call, {dataset},
#: {key} (a spare key) and {tenant}. Nothing runs the jobs (no orchestrator), so their state,
#: and with it each answer, stays as it is here.
ROUTES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("POST", "/v1/jobs", "submit", {"json": demo_job(2)}, 201),
    ("GET", "/v1/jobs", "read", {}, 200),
    ("GET", "/v1/jobs/{job}", "read", {}, 200),
    # a QUEUED job has no result yet: 409 (docs/api.md)
    ("GET", "/v1/jobs/{job}/result", "read", {}, 409),
    ("POST", "/v1/jobs/{fresh}/cancel", "submit", {}, 200),
    ("GET", "/v1/jobs/{train}/metrics", "read", {}, 200),
    ("GET", "/v1/jobs/{train}/checkpoint", "read", {}, 200),
    # a train job that has not SUCCEEDED has no model to predict with: 409
    ("POST", "/v1/jobs/{train}/predict", "submit", {"json": {"samples": [[0.1, 0.2]]}}, 409),
    (
        "POST",
        "/v1/datasets",
        "submit",
        {"content": CSV, "headers": {"Content-Type": "text/csv"}},
        201,
    ),
    ("GET", "/v1/datasets", "read", {}, 200),
    ("GET", "/v1/datasets/{dataset}", "read", {}, 200),
    ("GET", "/v1/nodes", "read", {}, 200),
    ("GET", "/v1/pools", "read", {}, 200),
    ("POST", "/v1/nodes/credentials", "admin", {"json": {"pool": "local-dm"}}, 201),
    ("GET", "/v1/nodes/credentials", "admin", {}, 200),
    ("DELETE", "/v1/nodes/credentials/{credential}", "admin", {}, 200),  # twice is fine
    ("POST", "/v1/keys", "admin", {"json": {"tenant": "acme", "scopes": ["read"]}}, 201),
    ("GET", "/v1/keys", "admin", {}, 200),
    ("DELETE", "/v1/keys/{key}", "admin", {}, 200),  # revoking twice is fine
    ("GET", "/v1/tenants/{tenant}", "read", {}, 200),
    ("PATCH", "/v1/tenants/{tenant}", "admin", {"json": {}}, 200),
]
#: Routes whose success would spoil the module's API for the tests after: rotating the admin
#: key revokes ``api.admin_key``. The matrix checks only who is refused there (401 and 403);
#: tests/integration/test_admin_key_rotation.py checks what an admin gets, on its own database.
REFUSED_ONLY: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("POST", "/v1/keys/rotate-admin", "admin", {}, 201),
]
#: what a documented 409 of the matrix says, so no other conflict passes for it
CONFLICTS = {
    "/v1/jobs/{job}/result": "is QUEUED; no result",
    "/v1/jobs/{train}/predict": "is QUEUED; it has no trained model yet",
}
#: routes naming one of acme's objects: another tenant gets 404 there
OWNED = ("{job}", "{fresh}", "{train}", "{dataset}", "{tenant}")


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(
        database_url, kafka_bootstrap, tenant_submit_burst=3, max_request_bytes=64 * 1024
    ) as running:
        for label, (tenant, scopes) in CALLERS.items():
            running.keys[label] = running.new_key(tenant, scopes)
        running.keys["admin"] = running.admin_key
        # the matrix's tenants submit fast enough for it; other tenants get the defaults
        fast = {"submit_rate_per_s": 1000}
        for tenant in ("acme", "globex"):
            answer = running.call("PATCH", f"/v1/tenants/{tenant}", running.admin_key, json=fast)
            assert answer.status_code == 200, answer.text
        yield running


def _headers(key: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**({"Authorization": f"Bearer {key}"} if key else {}), **(extra or {})}


def _submit(api: RunningApi, spec: dict[str, Any]) -> str:
    """acme submits ``spec``; returns the job's id."""
    answer = api.call("POST", "/v1/jobs", api.keys["read_submit"], json=spec)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    return job_id


@pytest.fixture(scope="module")
def objects(api: RunningApi) -> Iterator[dict[str, str]]:
    """acme's jobs and dataset, and a key to revoke.

    The train job has a checkpoint no orchestrator wrote, so it must never be planned: other
    modules share the database and plan whatever is queued. It is cancelled afterwards.
    """
    dataset = api.call(
        "POST",
        "/v1/datasets",
        api.keys["read_submit"],
        content=CSV,
        headers={"Content-Type": "text/csv"},
    )
    assert dataset.status_code == 201, dataset.text
    train = _submit(
        api,
        {"kind": "train", "data": {"dataset_id": dataset.json()["id"]}, "training": {"epochs": 1}},
    )
    # What an orchestrator writes when the job starts and takes a step (none runs here).
    engine = make_engine(api.settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            session.add(TrainingCheckpoint(job_id=train, step=1, state={"step": 1}, request=None))
            session.add(JobMetric(job_id=train, kind="step", step=1, epoch=1, values={"loss": 1.0}))
    finally:
        engine.dispose()
    spare = api.call("POST", "/v1/keys", api.admin_key, json={"tenant": "acme", "scopes": ["read"]})
    assert spare.status_code == 201, spare.text
    enrolled = api.call("POST", "/v1/nodes/credentials", api.admin_key, json={"pool": "local-dm"})
    assert enrolled.status_code == 201, enrolled.text
    yield {
        "job": _submit(api, demo_job(2)),
        "train": train,
        "dataset": dataset.json()["id"],
        "key": spare.json()["id"],
        "credential": enrolled.json()["id"],
        "tenant": "acme",
    }
    engine = make_engine(api.settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            session.execute(update(Job).where(Job.id == train).values(status="CANCELLED"))
    finally:
        engine.dispose()


def _call(api: RunningApi, method: str, url: str, key: str | None, kw: dict[str, Any]):  # type: ignore[no-untyped-def]
    kw = dict(kw)
    headers = _headers(key, kw.pop("headers", None))
    return httpx.request(method, api.url + url, headers=headers, timeout=120, **kw)


def _revoked_key(api: RunningApi) -> str:
    """A key of acme with read and submit, revoked."""
    body = {"tenant": "acme", "scopes": ["read", "submit"]}
    created = api.call("POST", "/v1/keys", api.admin_key, json=body).json()
    assert api.call("DELETE", f"/v1/keys/{created['id']}", api.admin_key).status_code == 200
    key: str = created["key"]
    return key


def test_the_matrix_names_every_v1_route(api: RunningApi) -> None:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    }
    renamed = {
        "{job}": "{job_id}",
        "{fresh}": "{job_id}",
        "{train}": "{job_id}",
        "{dataset}": "{dataset_id}",
        "{key}": "{key_id}",
        "{credential}": "{credential_id}",
    }
    named = set()
    for method, path, _, _, _ in ROUTES + REFUSED_ONLY:
        for old, new in renamed.items():
            path = path.replace(old, new)
        named.add((method, path))
    assert served == named


@pytest.mark.parametrize(
    ("method", "path", "scope", "kw", "success"), ROUTES, ids=lambda v: str(v)[:30]
)
def test_auth_matrix(
    api: RunningApi,
    objects: dict[str, str],
    method: str,
    path: str,
    scope: str,
    kw: dict[str, Any],
    success: int,
) -> None:
    def url() -> str:
        fresh = _submit(api, demo_job(2)) if "{fresh}" in path else ""
        return path.format(**objects, fresh=fresh)

    target = url()
    for key in (None, generate_key(), _revoked_key(api), "not a key"):
        answer = _call(api, method, target, key, kw)
        assert answer.status_code == 401, (key and key[:10], answer.text)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        if key and key.startswith("qk_"):
            assert key not in answer.text  # a key shows only its prefix
    for label, key in api.keys.items():
        answer = _call(api, method, url(), key, kw)
        scopes = ["admin"] if label == "admin" else CALLERS[label][1]
        if not ("admin" in scopes or scope in scopes):
            assert answer.status_code == 403, (label, answer.text)
        elif label == "other_tenant" and any(part in path for part in OWNED):
            assert answer.status_code == 404, (label, answer.text)
        else:
            assert answer.status_code == success, (label, answer.text)
            if success == 409:
                assert CONFLICTS[path] in answer.json()["detail"], (label, answer.text)


@pytest.mark.parametrize(
    ("method", "path", "scope", "kw", "success"), REFUSED_ONLY, ids=lambda v: str(v)[:30]
)
def test_auth_matrix_refusals(
    api: RunningApi, method: str, path: str, scope: str, kw: dict[str, Any], success: int
) -> None:
    for key in (None, generate_key(), _revoked_key(api), "not a key"):
        answer = _call(api, method, path, key, kw)
        assert answer.status_code == 401, (key and key[:10], answer.text)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    for label, (_, scopes) in CALLERS.items():
        assert scope not in scopes and "admin" not in scopes
        answer = _call(api, method, path, api.keys[label], kw)
        assert answer.status_code == 403, (label, answer.text)
    assert api.call("GET", "/v1/keys", api.admin_key).status_code == 200  # nothing rotated


def test_a_tenant_lists_only_its_own_and_admin_sees_all(
    api: RunningApi, objects: dict[str, str]
) -> None:
    theirs = api.call("POST", "/v1/jobs", api.keys["other_tenant"], json=demo_job(2))
    assert theirs.status_code == 201
    acme = {j["id"] for j in api.call("GET", "/v1/jobs?limit=500", api.keys["read"]).json()["data"]}
    globex = {
        j["id"]
        for j in api.call("GET", "/v1/jobs?limit=500", api.keys["other_tenant"]).json()["data"]
    }
    everyone = {
        j["id"] for j in api.call("GET", "/v1/jobs?limit=500", api.admin_key).json()["data"]
    }
    assert objects["job"] in acme and objects["job"] not in globex
    assert theirs.json()["id"] in globex and theirs.json()["id"] not in acme
    assert {objects["job"], theirs.json()["id"]} <= everyone
    datasets = api.call("GET", "/v1/datasets", api.keys["other_tenant"]).json()["data"]
    assert objects["dataset"] not in {d["id"] for d in datasets}
    # nor can another tenant train on acme's dataset: as if it did not exist
    spec = {
        "kind": "train",
        "data": {"dataset_id": objects["dataset"]},
        "training": {"epochs": 1},
    }
    answer = api.call("POST", "/v1/jobs", api.keys["other_tenant"], json=spec)
    assert answer.status_code == 422 and "not found" in answer.text


def test_grpc_needs_a_key_with_read_and_hides_other_tenants_jobs(
    api: RunningApi, objects: dict[str, str]
) -> None:
    job_id = objects["job"]
    with grpc.insecure_channel(api.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)

        def code(key: str | None, method: str) -> grpc.StatusCode:
            metadata = (("authorization", f"Bearer {key}"),) if key else ()
            try:
                if method == "GetJob":
                    stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata)
                else:  # the job is QUEUED: read the first event only
                    stream = stub.WatchJob(
                        jobs_pb2.WatchJobRequest(job_id=job_id), metadata=metadata
                    )
                    next(iter(stream))
                    stream.cancel()
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        revoked = _revoked_key(api)
        for method in ("GetJob", "WatchJob"):
            assert code(None, method) == grpc.StatusCode.UNAUTHENTICATED
            assert code(generate_key(), method) == grpc.StatusCode.UNAUTHENTICATED
            assert code(revoked, method) == grpc.StatusCode.UNAUTHENTICATED
            assert code("not a key", method) == grpc.StatusCode.UNAUTHENTICATED
            assert code(api.keys["submit"], method) == grpc.StatusCode.PERMISSION_DENIED
            assert code(api.keys["read"], method) == grpc.StatusCode.OK
            assert code(api.keys["admin"], method) == grpc.StatusCode.OK
            assert code(api.keys["other_tenant"], method) == grpc.StatusCode.NOT_FOUND


def test_submitting_too_fast_gets_429_with_retry_after(api: RunningApi) -> None:
    key = api.new_key("hasty", ["submit"])
    api.call("PATCH", "/v1/tenants/hasty", api.admin_key, json={"submit_rate_per_s": 0.001})
    answers = [api.call("POST", "/v1/jobs", key, json=demo_job(2)) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_quotas_on_unfinished_jobs_circuits_and_shots(api: RunningApi) -> None:
    key = api.new_key("small", ["submit"])
    quotas = {
        "max_concurrent_jobs": 1,
        "max_circuits_per_job": 3,
        "max_shots_per_job": 300,
        "submit_rate_per_s": 1000,
    }
    assert api.call("PATCH", "/v1/tenants/small", api.admin_key, json=quotas).status_code == 200
    too_many = api.call("POST", "/v1/jobs", key, json=demo_job(4))
    assert too_many.status_code == 422 and "circuit runs" in too_many.text
    too_many_shots = api.call("POST", "/v1/jobs", key, json=demo_job(2, shots=200))
    assert too_many_shots.status_code == 422 and "shots" in too_many_shots.text
    assert api.call("POST", "/v1/jobs", key, json=demo_job(2)).status_code == 201
    second = api.call("POST", "/v1/jobs", key, json=demo_job(2))
    assert second.status_code == 429 and second.headers["Retry-After"]
    assert "unfinished jobs" in second.text


def test_bodies_over_the_limit_get_413(api: RunningApi) -> None:
    key = api.keys["read_submit"]
    big = b'{"name": "' + b"x" * (65 * 1024) + b'"}'
    declared = api.call("POST", "/v1/jobs", key, content=big)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    streamed = api.call("POST", "/v1/jobs", key, content=chunks())
    assert streamed.status_code == 413


def test_program_nesting_is_bounded(api: RunningApi) -> None:
    spec = demo_job(2)
    spec["programs"][0]["source"] += "float a = " + "(" * 40 + "1" + ")" * 40 + ";\n"
    answer = api.call("POST", "/v1/jobs", api.keys["read_submit"], json=spec)
    assert answer.status_code == 422 and "nested deeper" in answer.text


def _aws_job(**extra: Any) -> dict[str, Any]:
    spec = demo_job(4, shots=100)
    spec.update(pool="aws-sv1", **extra)
    return spec


def test_paid_pools_need_a_cap_an_estimate_within_it_and_a_budget(api: RunningApi) -> None:
    key = api.new_key("payer", ["read", "submit"])
    fast = {"submit_rate_per_s": 1000}
    assert api.call("PATCH", "/v1/tenants/payer", api.admin_key, json=fast).status_code == 200
    no_cap = api.call("POST", "/v1/jobs", key, json=_aws_job())
    assert no_cap.status_code == 422 and "max_cost_usd" in no_cap.text
    estimate = no_cap.json()["estimate_usd"]
    assert estimate > 0
    low_cap = api.call("POST", "/v1/jobs", key, json=_aws_job(max_cost_usd=estimate / 2))
    assert low_cap.status_code == 422 and low_cap.json()["estimate_usd"] == estimate
    no_budget = api.call("POST", "/v1/jobs", key, json=_aws_job(max_cost_usd=estimate))
    assert no_budget.status_code == 422 and "budget" in no_budget.text
    budget = {"budget_usd": estimate * 1.5}
    assert api.call("PATCH", "/v1/tenants/payer", api.admin_key, json=budget).status_code == 200
    ok = api.call("POST", "/v1/jobs", key, json=_aws_job(max_cost_usd=estimate))
    assert ok.status_code == 201, ok.text
    assert api.call("GET", "/v1/tenants/payer", key).json()["spent_usd"] == pytest.approx(estimate)
    over = api.call("POST", "/v1/jobs", key, json=_aws_job(max_cost_usd=estimate))
    assert over.status_code == 422 and "remaining budget" in over.text
