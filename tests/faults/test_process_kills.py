"""Processes killed mid-job: a node agent (SIGKILL), the orchestrator (SIGKILL, then started again).

Nothing is lost (the job completes) and nothing is counted twice (exact results equal the
simulator's, and with shots every binding counts exactly ``shots`` shots).
"""

from __future__ import annotations

import signal

import pytest

from qorch.samples import demo_job
from tests.support.faults import (
    FaultRun,
    check_results,
    end,
    expected_values,
    fragment_statuses,
    freeze_mid_fragment,
    log_records,
    metric,
    outbox_size,
    submit_pair,
    values,
    wait_for_progress,
    wait_for_status,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults


def test_a_node_agent_killed_mid_fragment_has_its_fragments_delivered_again(
    fault_run: FaultRun,
) -> None:
    # The fragment timeout is far longer than the test, so the orchestrator never dispatches a
    # fragment again: only the consumer group, handing the dead agent's partitions (and their
    # uncommitted fragments) to node-2, can finish the jobs. Fragments of 12 bindings are long
    # enough to catch node-1 in the middle of one.
    with fault_run(fragment_bindings=12, fragment_timeout_s=3600.0) as (stack, client):
        exact, exact_id, shots_id = submit_pair(client, 96, seed=5)
        held = freeze_mid_fragment(stack, "node-1")  # it holds this fragment, unanswered
        stack.signal("node-1", signal.SIGKILL)
        assert held["job_id"] in (exact_id, shots_id)

        check_results(client, exact_id, exact, shots_id)
        for job_id in (exact_id, shots_id):
            progress = client.job(job_id)["progress"]
            assert progress["redispatches"] == 0
            assert progress["fragments_done"] == progress["fragments_total"] == 8
        assert client.job(shots_id)["progress"]["bindings_done"] == 96
        assert metric(stack, "orchestrator", "qorch_redispatches_total", reason="timeout") == 0
        assert metric(stack, "node-2", "qorch_node_fragments_total", outcome="success") > 0
        # The trace: node-1 started the fragment (attempt 1) and the survivor ran the same one,
        # the same attempt, after the kill; both lines name the job and the fragment.
        again = [
            line
            for line in log_records(stack, "node-2", "fragment started (attempt 1,")
            if line.get("fragment_id") == held["fragment_id"]
        ]
        assert again and again[0]["job_id"] == held["job_id"]
        assert "fragment started (attempt 1," in held["line"]


def test_the_orchestrator_killed_with_planned_unpublished_fragments_publishes_them_again(
    fault_run: FaultRun,
) -> None:
    with fault_run(own_broker=True) as (stack, client):  # a broker the test may freeze
        exact, exact_id, shots_id = submit_pair(client, 60, seed=6)
        wait_for_progress(client, exact_id, 3)
        # A frozen broker acknowledges nothing: a job planned now has its fragments written with
        # their outbox rows, and the relay cannot publish (delete) any of them.
        stack.signal_broker(signal.SIGSTOP)
        try:
            planned = demo_job(8, seed=8)
            planned_id = client.submit(planned)["id"]
            unpublished = wait_until(
                lambda: outbox_size(stack, planned_id),
                timeout=90,
                what="the job planned into the outbox",
            )
            in_flight = {
                job_id: fragment_statuses(stack, job_id) for job_id in (exact_id, shots_id)
            }
            end(stack, "orchestrator", signal.SIGKILL)
            # the kill met both windows: planned fragments not published, published not answered
            assert outbox_size(stack, planned_id) == unpublished == 4
            assert fragment_statuses(stack, planned_id) == {"pending": 4}
            assert all(s.get("dispatched", 0) > 0 for s in in_flight.values()), in_flight
        finally:
            stack.signal_broker(signal.SIGCONT)
        # jobs submitted while it is down are stored and wait for it
        late = demo_job(8, seed=9)
        late_id = client.submit(late)["id"]
        stack.restart("orchestrator")

        check_results(client, exact_id, exact, shots_id)
        for job_id, spec in ((planned_id, planned), (late_id, late)):
            assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
            assert values(client, job_id) == expected_values(spec)
        # every fragment answered and counted once; the restarted orchestrator published the
        # planned job's outbox rows and nothing is left there
        for job_id in (exact_id, shots_id, planned_id, late_id):
            progress = client.job(job_id)["progress"]
            assert progress["fragments_done"] == progress["fragments_total"]
            assert fragment_statuses(stack, job_id) == {"done": progress["fragments_total"]}
        wait_until(lambda: outbox_size(stack) == 0, timeout=30, what="the outbox emptied")
        published = metric(stack, "orchestrator", "qorch_fragments_published_total")
        assert published >= unpublished + 4  # the planned job's and the late job's fragments
