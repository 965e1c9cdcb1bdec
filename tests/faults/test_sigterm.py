"""SIGTERM to each service mid-job: it finishes or hands back its work and exits 0."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from qorch.client import QorchClient
from qorch.stack import Stack
from tests.faults.conftest import StackFactory
from tests.faults.support import wait_for_progress, wait_for_status
from tests.faults.test_process_kills import check_results, counts_job
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def terminate(stack: Stack, name: str) -> int:
    """SIGTERM ``name`` and wait for it to exit; returns its exit status."""
    stack.signal(name, signal.SIGTERM)
    proc = stack.service(name).proc
    assert proc is not None
    wait_until(lambda: proc.poll() is not None, timeout=60, what=f"{name} to exit")
    return proc.returncode


def test_sigterm_to_every_service_mid_job_exits_0_and_loses_nothing(
    fault_stack: StackFactory,
    fresh_database: str,
    kafka_bootstrap: str,
    client_for: Callable[[Stack], QorchClient],
) -> None:
    from qorch.samples import demo_job

    with fault_stack(database_url=fresh_database, kafka_bootstrap=kafka_bootstrap) as stack:
        client = client_for(stack)
        exact = demo_job(80, seed=71)
        exact_id = client.submit(exact)["id"]
        shots_id = client.submit(counts_job(80))["id"]

        wait_for_progress(client, exact_id, 2)
        assert terminate(stack, "node-1") == 0  # finishes the fragment in hand, hands back the rest
        wait_for_progress(client, exact_id, 8)
        assert terminate(stack, "orchestrator") == 0  # finishes its transaction, commits offsets
        stack.restart("orchestrator")
        assert terminate(stack, "api") == 0  # drains its connections
        stack.restart("api")
        client = client_for(stack)
        wait_until(lambda: client_ready(client), timeout=60, what="the API back")
        stack.restart("node-1")

        for job_id in (exact_id, shots_id):
            assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
        check_results(client, exact_id, exact, shots_id)


def client_ready(client: QorchClient) -> bool:
    """The API answers."""
    try:
        client.jobs(limit=1)
    except Exception:
        return False
    return True
