"""Batched admission against Postgres: the quotas and the budget hold inside one batch of a
tenant's submissions (``admission.admit``), and through the served API when many of a tenant's
submissions come at once (and are stored in batches)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import TypeAdapter

from api import admission
from api.admission import Candidate, CostError, TooManyRequests
from api.auth import Principal
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.kinds import AnyJob, job_kind
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Tenant
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

JOBS: TypeAdapter[AnyJob] = TypeAdapter(AnyJob)


def _candidate(
    tenant: str, settings: Settings, spec: dict[str, Any], admin: bool = False
) -> Candidate:
    scopes = frozenset({"admin"} if admin else {"submit"})
    principal = Principal(f"key-{tenant}", "qk_test", tenant, scopes)
    job = JOBS.validate_python(spec)
    prepared = job_kind(job.kind).prepare(job, settings, lambda _id: None)
    return Candidate(principal, job, prepared, admission.estimate(job, settings, prepared))


def test_one_batch_counts_each_admitted_job_against_the_next(factory: SessionFactory) -> None:
    tenant = f"batch-{uuid.uuid4().hex[:8]}"
    settings = Settings(tenant_max_concurrent_jobs=3, tenant_max_circuits_per_job=10)
    too_big = demo_job(20)  # 20 circuit runs: over the size quota, and not counted
    specs = [demo_job(2), too_big, demo_job(2), demo_job(2), demo_job(2)]
    candidates = [_candidate(tenant, settings, spec) for spec in specs]
    with session_scope(factory) as session:
        outcomes = admission.admit(session, tenant, settings, candidates)

    assert [type(o).__name__ for o in outcomes] == [
        "NoneType",
        "SpecError",
        "NoneType",
        "NoneType",
        "TooManyRequests",
    ]
    assert isinstance(outcomes[1], SpecError) and "circuit runs" in str(outcomes[1].errors)
    assert isinstance(outcomes[4], TooManyRequests)
    assert "3 unfinished jobs" in outcomes[4].detail


def test_one_batch_charges_each_admitted_job_against_the_budget(factory: SessionFactory) -> None:
    tenant = f"batch-{uuid.uuid4().hex[:8]}"
    paid = {**demo_job(4, shots=100), "pool": "aws-sv1"}
    probe = _candidate(tenant, Settings(), {**paid, "max_cost_usd": 1000.0})
    settings = Settings(tenant_budget_usd=2.5 * probe.cost, tenant_max_concurrent_jobs=100)
    capped = {**paid, "max_cost_usd": probe.cost}
    candidates = [_candidate(tenant, settings, spec) for spec in (capped, paid, capped, capped)]
    admin = _candidate(tenant, settings, capped, admin=True)  # admins are charged too
    with session_scope(factory) as session:
        outcomes = admission.admit(session, tenant, settings, [*candidates, admin])

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], CostError) and "required" in str(outcomes[1].errors)
    for refused in (outcomes[3], outcomes[4]):
        assert isinstance(refused, CostError) and "remaining budget" in str(refused.errors)
    with session_scope(factory) as session:
        spent = session.get(Tenant, tenant)
        assert spent is not None and spent.spent_usd == pytest.approx(2 * probe.cost)


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        yield running


def test_many_submissions_at_once_keep_the_unfinished_jobs_quota(
    api: RunningApi, factory: SessionFactory
) -> None:
    tenant = f"burst-{uuid.uuid4().hex[:8]}"
    quotas = {"max_concurrent_jobs": 7, "submit_rate_per_s": 1000}
    assert api.call("PATCH", f"/v1/tenants/{tenant}", api.admin_key, json=quotas).status_code == 200
    key = api.new_key(tenant, ["submit", "read"])
    with ThreadPoolExecutor(24) as pool:
        answers = list(
            pool.map(
                lambda i: api.call("POST", "/v1/jobs", key, json=demo_job(2, seed=i)), range(24)
            )
        )

    created = [a.json() for a in answers if a.status_code == 201]
    assert sorted(a.status_code for a in answers) == [201] * 7 + [429] * 17, [
        a.text for a in answers if a.status_code not in (201, 429)
    ]
    assert len({job["id"] for job in created}) == 7
    assert all(job["status"] == "QUEUED" and job["last_seq"] == 1 for job in created)
    with session_scope(factory) as session:
        assert repo.active_jobs(session, tenant) == 7
    for job in created:  # each is stored with its first event
        read = api.call("GET", f"/v1/jobs/{job['id']}", key)
        assert read.status_code == 200 and read.json()["last_seq"] == 1
        api.call("POST", f"/v1/jobs/{job['id']}/cancel", key)
