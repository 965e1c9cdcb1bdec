"""Outages mid-job: the broker restarted empty, Postgres stopped for a few seconds."""

from __future__ import annotations

import httpx
import pytest

from qorch.samples import demo_job
from tests.support.faults import (
    FaultRun,
    expected_values,
    metric,
    values,
    wait_for_progress,
    wait_for_status,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults


def test_a_broker_restarted_empty_mid_job_loses_no_fragment(fault_run: FaultRun) -> None:
    with fault_run(own_broker=True) as (stack, client):  # a broker the test may restart
        spec = demo_job(60, seed=21)
        job_id = client.submit(spec)["id"]
        wait_for_progress(client, job_id, 3)
        stack.stop_broker()  # topics, messages, offsets and groups are gone
        stack.start_broker()

        assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
        assert values(client, job_id) == expected_values(spec)
        assert metric(stack, "orchestrator", "qorch_broker_resets_total") >= 1
        # and the platform keeps working: a new job runs on the reconnected services
        after = demo_job(6, seed=22)
        after_id = client.submit(after)["id"]
        assert wait_for_status(client, after_id)["status"] == "SUCCEEDED"
        assert values(client, after_id) == expected_values(after)


def test_postgres_down_for_a_while_gives_503s_then_the_job_completes(
    fault_run: FaultRun,
) -> None:
    with fault_run(own_postgres=True) as (stack, client):  # a Postgres the test may stop
        spec = demo_job(60, seed=31)
        job_id = client.submit(spec)["id"]
        wait_for_progress(client, job_id, 3)
        stack.stop_postgres()
        try:
            auth = {"Authorization": f"Bearer {stack.admin_key}"}
            with httpx.Client(base_url=stack.api_url, timeout=15, headers=auth) as http:
                # the API answers, with 503 and a reason, never 500
                answers = [
                    http.get(f"/v1/jobs/{job_id}"),
                    http.get("/v1/jobs"),
                    http.post("/v1/jobs", json=demo_job(2)),
                ]
                for answer in answers:
                    assert answer.status_code == 503, answer.text
                    assert "database unavailable" in answer.json()["detail"]
                    assert answer.headers["Retry-After"]
                ready = http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"]["postgres"].startswith("unavailable")
                assert ready.json()["checks"]["kafka"].startswith("ok")
                # the services wait for the database instead of dying
                for name in ("api", "orchestrator", "node-1", "node-2"):
                    proc = stack.service(name).proc
                    assert proc is not None and proc.poll() is None, f"{name} died"
                wait_until(
                    lambda: metric(stack, "orchestrator", "qorch_db_retries_total") > 0,
                    timeout=30,
                    what="the orchestrator retrying the database",
                )
        finally:
            stack.start_postgres()

        assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
        assert values(client, job_id) == expected_values(spec)
        assert httpx.get(f"{stack.api_url}/readyz").status_code == 200
        assert metric(stack, "api", "qorch_api_unavailable_total", dependency="postgres") >= 3
