"""A submission names a pool the platform knows, and hears when no live agent serves it
(issue 15): a pool no setting declares, no credential was enrolled for and no agent served is
a 422 naming ``pool``, with nothing stored; a pool known by enrollment alone is accepted; the
answer to a submission on a pool without a live agent warns that the job waits, and
``qorch submit`` prints the warning; once an agent serves the pool, there is none. Real
Postgres (a database of its own: no other test's agents), real broker, the API served over
HTTP, the real orchestrator and agent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from qorch import cli
from qorch.samples import demo_job
from qorchestra.examples import example
from qorchestra.waiting import no_agent_warning
from tests.support.agents import running
from tests.support.api import RunningApi, running_api
from tests.support.settings import enrolled
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture
def api(fresh_database: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API on a database of its own, with a key of a tenant that submits and reads."""
    with running_api(fresh_database, kafka_bootstrap, node_offline_after_s=3.0) as served:
        served.keys["user"] = served.new_key(f"pools-{uuid.uuid4().hex[:8]}", ["submit", "read"])
        yield served


def circuits(pool: str) -> dict[str, Any]:
    return {**demo_job(2), "pool": pool}


def minimize(pool: str) -> dict[str, Any]:
    """A small minimisation: a training kind, whose pool may be any name the platform knows."""
    return {**example("h2-vqe"), "pool": pool, "steps": 2}


def submit(api: RunningApi, spec: dict[str, Any]) -> Any:
    answer = api.call("POST", "/v1/jobs", api.keys["user"], json=spec)
    assert answer.status_code == 201, answer.text
    return answer.json()


def stored_jobs(api: RunningApi) -> int:
    answer = api.call("GET", "/v1/jobs", api.keys["user"])
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["count"]
    return count


def enroll(api: RunningApi, pool: str) -> str:
    """A node credential an admin enrolled for ``pool`` through the API; returns its id."""
    answer = api.call("POST", "/v1/nodes/credentials", api.admin_key, json={"pool": pool})
    assert answer.status_code == 201, answer.text
    credential: str = answer.json()["id"]
    return credential


def test_a_job_on_a_pool_without_a_live_agent_is_queued_with_a_warning_that_qorch_prints(
    api: RunningApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = submit(api, circuits("local-dm"))

    assert job["status"] == "QUEUED"
    assert job["warnings"] == [no_agent_warning("local-dm")]
    assert "qorch nodes enroll --pool local-dm" in job["warnings"][0]
    read = api.call("GET", f"/v1/jobs/{job['id']}", api.keys["user"]).json()
    assert read["warnings"] == []  # the submission's answer only

    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(circuits("local-dm")))
    monkeypatch.setenv("QORCH_API_URL", api.url)
    monkeypatch.setenv("QORCH_GRPC_TARGET", api.grpc_target)
    monkeypatch.setenv("QORCH_API_KEY", api.keys["user"])
    cli.get_settings.cache_clear()
    capsys.readouterr()
    try:
        assert cli.main(["submit", str(spec)]) == 0
    finally:
        cli.get_settings.cache_clear()
    out = capsys.readouterr()
    assert f"warning: {no_agent_warning('local-dm')}" in out.err
    [job_id] = out.out.split()  # stdout holds the id alone
    assert api.call("GET", f"/v1/jobs/{job_id}", api.keys["user"]).json()["pool"] == "local-dm"


def test_an_unknown_pool_is_refused_and_one_known_by_enrollment_alone_is_accepted(
    api: RunningApi,
) -> None:
    nowhere = f"lab-{uuid.uuid4().hex[:8]}"
    for spec in (minimize(nowhere), circuits(f"aws-{nowhere}")):
        answer = api.call("POST", "/v1/jobs", api.keys["user"], json=spec)
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["detail"]
        assert error["loc"] == ["body", "pool"]
        assert "unknown pool" in error["msg"] and "QORCH_POOL_MAX_QUBITS" in error["msg"]
        assert f"qorch nodes enroll --pool {spec['pool']}" in error["msg"]
    assert stored_jobs(api) == 0

    # Enrolled, and enrolled then revoked: a pool once given an agent stays known.
    lab, retired = f"lab-{uuid.uuid4().hex[:8]}", f"lab-{uuid.uuid4().hex[:8]}"
    enroll(api, lab)
    revoked = api.call("DELETE", f"/v1/nodes/credentials/{enroll(api, retired)}", api.admin_key)
    assert revoked.status_code == 200, revoked.text
    for pool in (lab, retired):
        job = submit(api, minimize(pool))
        assert (job["pool"], job["warnings"]) == (pool, [no_agent_warning(pool)])
    assert stored_jobs(api) == 2


@pytest.fixture
def orchestrator(api: RunningApi) -> Iterator[Orchestrator]:
    """The orchestrator of the API's database and topics: it records the agents' heartbeats."""
    orchestrator = Orchestrator(api.settings)
    with running(orchestrator):
        yield orchestrator


def test_a_job_on_a_pool_a_live_agent_serves_has_no_warning(
    api: RunningApi, orchestrator: Orchestrator
) -> None:
    def live_agents() -> int:
        pools = api.call("GET", "/v1/pools", api.admin_key).json()["data"]
        return sum(p["agents_live"] for p in pools if p["name"] == "local-sv")

    with running(NodeAgent(enrolled(api.settings, "local-sv"), "local-sv")):
        wait_until(live_agents, timeout=DEADLINE_S, what="a live agent of local-sv")
        job = submit(api, circuits("local-sv"))
    assert job["warnings"] == []
