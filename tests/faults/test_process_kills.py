"""Processes killed mid-job: a node agent (SIGKILL), the orchestrator (SIGKILL, then started again).

Nothing is lost (the job completes) and nothing is counted twice (exact results equal the
simulator's, and with shots every binding counts exactly ``shots`` shots).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from qorch.client import QorchClient
from qorch.samples import demo_job
from qorch.stack import Stack
from tests.faults.conftest import StackFactory
from tests.faults.support import metric, wait_for_progress, wait_for_status
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

SHOTS = 100


def expected_values(spec: dict[str, Any]) -> list[list[float]]:
    """What a fault-free run gives: the same circuits on LocalSimulator, run here directly."""
    simulator = LocalSimulator("braket_sv")
    program = spec["programs"][0]
    pragmas = []
    for obs in spec["result"]["observables"]:
        factors = [f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I"]
        pragmas.append("#pragma braket result expectation " + " @ ".join(factors))
    source = program["source"] + "\n".join(pragmas) + "\n"
    return [
        [float(v) for v in simulator.run(Program(source=source, inputs=b), shots=0).result().values]
        for b in program["bindings"]
    ]


def counts_job(bindings: int) -> dict[str, Any]:
    """The demo circuits measured ``SHOTS`` times per binding."""
    spec = demo_job(bindings, seed=11, shots=SHOTS)
    spec["result"] = {"type": "counts"}
    return spec


def check_results(client: QorchClient, exact_id: str, exact: dict[str, Any], shots_id: str) -> None:
    """Exact values equal a fault-free run's; every binding counted exactly SHOTS shots."""
    values = client.result(exact_id)["result"]["programs"][0]["values"]
    assert values == expected_values(exact)
    counted = client.result(shots_id)["result"]["programs"][0]["values"]
    assert [sum(c.values()) for c in counted] == [SHOTS] * len(counted)


def test_a_node_agent_killed_mid_job_loses_nothing_and_counts_nothing_twice(
    fault_stack: StackFactory,
    fresh_database: str,
    kafka_bootstrap: str,
    client_for: Callable[[Stack], QorchClient],
) -> None:
    with fault_stack(database_url=fresh_database, kafka_bootstrap=kafka_bootstrap) as stack:
        client = client_for(stack)
        exact = demo_job(60, seed=5)
        exact_id = client.submit(exact)["id"]
        shots_id = client.submit(counts_job(60))["id"]
        wait_for_progress(client, exact_id, 3)
        stack.signal("node-1", signal.SIGKILL)

        for job_id in (exact_id, shots_id):
            assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
        check_results(client, exact_id, exact, shots_id)
        # the survivor did the rest; the dead agent shows as offline or stopped, never counted
        assert client.job(shots_id)["progress"]["bindings_done"] == 60
        assert metric(stack, "node-2", "qorch_node_fragments_total", outcome="success") > 0


def test_the_orchestrator_killed_mid_job_and_started_again_resumes(
    fault_stack: StackFactory,
    fresh_database: str,
    kafka_bootstrap: str,
    client_for: Callable[[Stack], QorchClient],
) -> None:
    with fault_stack(database_url=fresh_database, kafka_bootstrap=kafka_bootstrap) as stack:
        client = client_for(stack)
        exact = demo_job(60, seed=6)
        exact_id = client.submit(exact)["id"]
        shots_id = client.submit(counts_job(60))["id"]
        wait_for_progress(client, exact_id, 3)
        stack.signal("orchestrator", signal.SIGKILL)
        proc = stack.service("orchestrator").proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, timeout=30, what="the orchestrator to die")
        # jobs submitted while it is down are stored and wait for it
        late = demo_job(8, seed=9)
        late_id = client.submit(late)["id"]
        stack.restart("orchestrator")

        for job_id in (exact_id, shots_id, late_id):
            assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
        check_results(client, exact_id, exact, shots_id)
        assert client.result(late_id)["result"]["programs"][0]["values"] == expected_values(late)
