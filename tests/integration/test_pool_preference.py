"""A job may name several pools in order of preference (issue 16): the API checks it against
every one (422 at ``pool[i]`` for an unknown one; the programs on every emulated device among
them), leaves out the paid ones whose estimate exceeds the cap, and the orchestrator starts it
on the first that is online; while none is, it waits QUEUED, and fails past its
``max_queue_s``. Every kind that takes a pool takes a list. Real Postgres (a database of its
own: no other test's agents), real broker, the API served over HTTP, the real orchestrator and
agents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.examples import example
from qorchestra.waiting import no_pool_online_warning
from tests.support.agents import running
from tests.support.api import RunningApi, running_api
from tests.support.settings import enrolled
from tests.support.stored_jobs import stored_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")


@pytest.fixture
def api(fresh_database: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API and an orchestrator on a database of their own, and a tenant's key."""
    with running_api(
        fresh_database, kafka_bootstrap, node_offline_after_s=3.0, tenant_budget_usd=10.0
    ) as served:
        served.keys["user"] = served.new_key(f"prefs-{uuid.uuid4().hex[:8]}", ["submit", "read"])
        with running(Orchestrator(served.settings)):
            yield served


def agent_settings(api: RunningApi, pool: str) -> Settings:
    """An agent's settings: a credential enrolled for ``pool``, a node id of its own."""
    return enrolled(api.settings, pool).model_copy(update={"node_id": f"{pool}-agent"})


def post(api: RunningApi, spec: dict[str, Any]) -> Any:
    return api.call("POST", "/v1/jobs", api.keys["user"], json=spec)


def job(api: RunningApi, job_id: str) -> dict[str, Any]:
    answer = api.call("GET", f"/v1/jobs/{job_id}", api.keys["user"])
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def ended(api: RunningApi, job_id: str) -> dict[str, Any] | None:
    found = job(api, job_id)
    return found if found["status"] in ENDED else None


def events(api: RunningApi, job_id: str) -> list[tuple[str, str]]:
    return stored_events(api.settings.database_url, job_id)


def refusals(answer: Any) -> list[tuple[list[Any], str]]:
    assert answer.status_code == 422, answer.text
    return [(error["loc"], error["msg"]) for error in answer.json()["detail"]]


def test_a_list_is_checked_pool_by_pool(api: RunningApi) -> None:
    before = api.call("GET", "/v1/jobs", api.keys["user"]).json()["count"]
    [(loc, msg)] = refusals(post(api, {**demo_job(2), "pool": ["local-sv", "aws-nowhere"]}))
    assert loc == ["body", "pool", 1] and "unknown pool 'aws-nowhere'" in msg
    [(loc, msg)] = refusals(post(api, {**demo_job(2), "pool": []}))
    assert loc == ["body", "pool"] and "at least 1" in msg
    [(loc, msg)] = refusals(post(api, {**demo_job(2), "pool": ["local-sv", "local-sv"]}))
    assert loc == ["body", "pool"] and "named twice" in msg
    [(loc, msg)] = refusals(post(api, {**demo_job(2), "pool": ["local-sv", "Local"]}))
    assert loc == ["body", "pool", 1]
    # valid on local-sv, not on the emulated Garnet: the program must run on every pool named
    errors = refusals(post(api, {**demo_job(2), "pool": ["local-sv", "emu-garnet"]}))
    assert errors and all(loc[:3] == ["body", "programs", 0] for loc, _ in errors), errors
    assert any("does not run on IQM Garnet (pool emu-garnet)" in msg for _, msg in errors)
    # a paid pool needs a cap, as alone
    [(loc, msg)] = refusals(post(api, {**demo_job(2), "pool": ["local-sv", "aws-sv1"]}))
    assert loc == ["body", "max_cost_usd"] and "required on aws-sv1" in msg
    # every pool over the cap: refused with the cheapest estimate
    over = {**demo_job(2), "pool": ["aws-sv1", "aws-dm1"], "max_cost_usd": 0.01}
    [(loc, msg)] = refusals(post(api, over))
    assert loc == ["body", "max_cost_usd"] and "exceeds the cap $0.01" in msg
    assert api.call("GET", "/v1/jobs", api.keys["user"]).json()["count"] == before


def test_a_paid_pool_over_the_cap_is_left_out_with_a_warning(api: RunningApi) -> None:
    spec = {**demo_job(2), "pool": ["aws-sv1", "local-sv"], "max_cost_usd": 0.01}
    answer = post(api, spec)
    assert answer.status_code == 201, answer.text
    submitted = answer.json()
    assert (submitted["pool"], submitted["pools"]) == ("local-sv", ["local-sv"])
    assert submitted["cost"]["estimate_usd"] == 0.0
    left_out = [w for w in submitted["warnings"] if w.startswith("pool aws-sv1 left out")]
    assert left_out == ["pool aws-sv1 left out: its estimate $0.15 exceeds max_cost_usd $0.01"]
    assert no_pool_online_warning(["aws-sv1", "local-sv"]) in submitted["warnings"]
    api.call("POST", f"/v1/jobs/{submitted['id']}/cancel", api.keys["user"])


def test_a_job_starts_on_the_first_online_pool(api: RunningApi) -> None:
    with running(NodeAgent(agent_settings(api, "local-sv"), "local-sv")):
        answer = post(api, {**demo_job(2), "pool": ["local-dm", "local-sv"]})
        assert answer.status_code == 201, answer.text
        done = wait_until(lambda: ended(api, answer.json()["id"]), DEADLINE_S, what="the job")
    assert (done["status"], done["pool"], done["pools"]) == (
        "SUCCEEDED",
        "local-sv",
        ["local-dm", "local-sv"],
    )
    kinds = [(kind, message) for kind, message in events(api, done["id"])]
    assert ("pool_chosen", "runs on pool local-sv (not online: local-dm: no live node agent)") in (
        kinds
    )
    running_event = next(message for kind, message in kinds if kind == "running")
    assert "for pool local-sv" in running_event


def test_a_job_waits_queued_until_one_of_its_pools_is_online(api: RunningApi) -> None:
    answer = post(api, {**demo_job(2), "pool": ["local-dm", "local-sv"]})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    assert answer.json()["warnings"] == [no_pool_online_warning(["local-dm", "local-sv"])]
    waiting = wait_until(lambda: (j := job(api, job_id))["waiting"] and j, DEADLINE_S)
    assert waiting["status"] == "QUEUED"
    assert waiting["waiting"].startswith("waiting: none of pools local-dm, local-sv is online")
    with running(NodeAgent(agent_settings(api, "local-dm"), "local-dm")):
        done = wait_until(lambda: ended(api, job_id), DEADLINE_S, what="the job")
    assert (done["status"], done["pool"], done["waiting"]) == ("SUCCEEDED", "local-dm", None)
    kinds = [kind for kind, _ in events(api, job_id)]
    assert kinds[:4] == ["submitted", "waiting", "resumed", "pool_chosen"], kinds
    assert ("pool_chosen", "runs on pool local-dm (its first choice)") in events(api, job_id)


def test_a_job_none_of_whose_pools_comes_online_fails_past_max_queue_s(api: RunningApi) -> None:
    spec = {**demo_job(2), "pool": ["local-dm", "local-sv"], "max_queue_s": 1.0}
    answer = post(api, spec)
    assert answer.status_code == 201, answer.text
    done = wait_until(lambda: ended(api, answer.json()["id"]), DEADLINE_S, what="the job")
    assert done["status"] == "FAILED"
    assert done["error"].startswith("waited ")
    assert (
        "for one of pools local-dm, local-sv to be online, longer than its max_queue_s"
        in (done["error"])
    )


def test_a_training_kind_takes_a_list_too(api: RunningApi) -> None:
    spec = {**example("h2-vqe"), "pool": ["local-dm", "local-sv"], "steps": 2}
    with running(NodeAgent(agent_settings(api, "local-sv"), "local-sv")):
        answer = post(api, spec)
        assert answer.status_code == 201, answer.text
        done = wait_until(lambda: ended(api, answer.json()["id"]), DEADLINE_S, what="the job")
    assert (done["status"], done["pool"]) == ("SUCCEEDED", "local-sv"), done
