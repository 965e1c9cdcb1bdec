"""Processes killed mid-job: a node agent (SIGKILL), the orchestrator (SIGKILL, then started again).

Nothing is lost (the job completes) and nothing is counted twice (exact results equal the
simulator's, and with shots every binding counts exactly ``shots`` shots).
"""

from __future__ import annotations

import signal

import pytest

from qorch.samples import demo_job
from tests.faults.conftest import FaultRun
from tests.faults.support import (
    check_results,
    end,
    expected_values,
    metric,
    submit_pair,
    values,
    wait_for_progress,
    wait_for_status,
)

pytestmark = pytest.mark.faults


def test_a_node_agent_killed_mid_job_loses_nothing_and_counts_nothing_twice(
    fault_run: FaultRun,
) -> None:
    with fault_run() as (stack, client):
        exact, exact_id, shots_id = submit_pair(client, 60, seed=5)
        wait_for_progress(client, exact_id, 3)
        stack.signal("node-1", signal.SIGKILL)

        check_results(client, exact_id, exact, shots_id)
        # the survivor did the rest; the dead agent shows as offline or stopped, never counted
        assert client.job(shots_id)["progress"]["bindings_done"] == 60
        assert metric(stack, "node-2", "qorch_node_fragments_total", outcome="success") > 0


def test_the_orchestrator_killed_mid_job_and_started_again_resumes(fault_run: FaultRun) -> None:
    with fault_run() as (stack, client):
        exact, exact_id, shots_id = submit_pair(client, 60, seed=6)
        wait_for_progress(client, exact_id, 3)
        end(stack, "orchestrator", signal.SIGKILL)
        # jobs submitted while it is down are stored and wait for it
        late = demo_job(8, seed=9)
        late_id = client.submit(late)["id"]
        stack.restart("orchestrator")

        check_results(client, exact_id, exact, shots_id)
        assert wait_for_status(client, late_id)["status"] == "SUCCEEDED"
        assert values(client, late_id) == expected_values(late)
