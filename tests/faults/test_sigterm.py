"""SIGTERM to each service mid-job: it finishes or hands back its work and exits 0."""

from __future__ import annotations

import pytest

from tests.support.faults import (
    FaultRun,
    api_ready,
    check_results,
    end,
    submit_pair,
    wait_for_progress,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults


def test_sigterm_to_every_service_mid_job_exits_0_and_loses_nothing(fault_run: FaultRun) -> None:
    with fault_run() as (stack, client):
        exact, exact_id, shots_id = submit_pair(client, 80, seed=71)

        wait_for_progress(client, exact_id, 2)
        assert end(stack, "node-1") == 0  # finishes the fragment in hand, hands back the rest
        wait_for_progress(client, exact_id, 8)
        assert end(stack, "orchestrator") == 0  # finishes its transaction, commits offsets
        stack.restart("orchestrator")
        assert end(stack, "api") == 0  # drains its connections
        stack.restart("api")
        wait_until(lambda: api_ready(client), timeout=60, what="the API back")
        stack.restart("node-1")

        check_results(client, exact_id, exact, shots_id)
