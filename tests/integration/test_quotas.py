"""A tenant's circuits and shots quotas bound every kind of job, not only circuits jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qorchestra.examples import example
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

#: Circuits per job of the tenant under test: far below a training example's tens of thousands.
CIRCUITS = 1000
#: This module's own tenant: other modules on the shared database have theirs.
TENANT = "quota-bounded"


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        quotas = {
            "max_circuits_per_job": CIRCUITS,
            "max_shots_per_job": 10**9,
            "max_concurrent_jobs": 100,
            "submit_rate_per_s": 1000,
        }
        patch = running.call("PATCH", f"/v1/tenants/{TENANT}", running.admin_key, json=quotas)
        assert patch.status_code == 200, patch.text
        running.keys["small"] = running.new_key(TENANT, ["submit", "read"])
        yield running


@pytest.mark.parametrize(
    ("name", "field"),
    [("moons-classifier", ["body", "training", "epochs"]), ("h2-vqe", ["body", "steps"])],
)
def test_training_kinds_are_bounded_by_the_circuits_quota(
    api: RunningApi, name: str, field: list[str]
) -> None:
    answer = api.call("POST", "/v1/jobs", api.keys["small"], json=example(name))
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == field
    assert f"may run {CIRCUITS} per job" in error["msg"]


def test_a_small_enough_training_job_is_admitted(api: RunningApi) -> None:
    spec = example("h2-vqe")
    spec["steps"] = 1  # a few circuits: within the quota
    answer = api.call("POST", "/v1/jobs", api.keys["small"], json=spec)
    assert answer.status_code == 201, answer.text
    api.call("POST", f"/v1/jobs/{answer.json()['id']}/cancel", api.keys["small"])


def test_shots_bound_training_kinds_too(api: RunningApi) -> None:
    patch = api.call(
        "PATCH", f"/v1/tenants/{TENANT}", api.admin_key, json={"max_shots_per_job": 1000}
    )
    assert patch.status_code == 200
    spec = {**example("h2-vqe"), "steps": 1, "shots": 100}
    answer = api.call("POST", "/v1/jobs", api.keys["small"], json=spec)
    assert answer.status_code == 422, answer.text
    assert any(e["loc"] == ["body", "shots"] for e in answer.json()["detail"])


def test_admins_are_not_bounded_by_tenant_quotas(api: RunningApi) -> None:
    answer = api.call("POST", "/v1/jobs", api.admin_key, json=example("moons-classifier"))
    assert answer.status_code == 201, answer.text
    api.call("POST", f"/v1/jobs/{answer.json()['id']}/cancel", api.admin_key)
