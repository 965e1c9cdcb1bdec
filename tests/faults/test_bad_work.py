"""Bad work mid-job: a poison fragment, a straggling agent, duplicated and reordered results."""

from __future__ import annotations

import random
import signal

import pytest

from proto.qorch.v1 import fragments_pb2 as pb
from qorch.samples import demo_job
from tests.support.faults import (
    FaultRun,
    expected_values,
    forged_failures,
    forged_successes,
    freeze_mid_fragment,
    inject,
    insider,
    log_records,
    metric,
    read_all,
    signed_result,
    values,
    wait_for_progress,
    wait_for_status,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

#: Valid OpenQASM that validation accepts (it binds inputs to 0) but that divides by zero at
#: run time when ``a == 1``: a real poison, raised by Braket's interpreter on every attempt.
POISON = """OPENQASM 3.0;
input float a;
qubit[2] q;
float b = 1.0 / (a - 1.0);
rx(b) q[0];
cnot q[0], q[1];
"""


def test_a_poison_fragment_fails_once_is_dead_lettered_and_other_jobs_go_on(
    fault_run: FaultRun,
) -> None:
    """The same program and inputs fail the same way on every agent: however many attempts a
    fragment may have, a program error is not retried (nodes/executors/local.py)."""
    with fault_run(max_attempts=12) as (stack, client):
        poison = {
            "result": {"type": "expectation", "observables": ["ZZ"]},
            "programs": [{"source": POISON, "bindings": [{"a": 0.5}, {"a": 0.25}, {"a": 1.0}]}],
        }
        poison_id = client.submit(poison)["id"]
        healthy = demo_job(24, seed=41)
        healthy_id = client.submit(healthy)["id"]

        failed = wait_for_status(client, poison_id)
        assert failed["status"] == "FAILED"
        # the reason names the circuit (program and bindings), the attempts, the error and
        # the binding of the fragment that raised it
        assert "program 0, bindings 2-2 failed after 1 attempt(s)" in failed["error"]
        assert "ZeroDivisionError: binding 0: float division by zero" in failed["error"]

        letters = read_all(
            stack.settings, stack.settings.topic("fragments.dlq"), pb.DeadLetter.FromString, 1
        )
        poison_fragment = letters[0].fragment.fragment_id
        assert letters[0].fragment.job_id == poison_id
        assert letters[0].fragment.binding_offset == 2
        assert "ZeroDivisionError" in letters[0].reason

        # the other job on the same pool was not disturbed: right values, nothing sent again
        done = wait_for_status(client, healthy_id)
        assert done["status"] == "SUCCEEDED" and done["progress"]["redispatches"] == 0
        assert values(client, healthy_id) == expected_values(healthy)
        assert not any(e.type == "redispatched" for e in client.watch(poison_id))
        assert metric(stack, "orchestrator", "qorch_retries_total") == 0
        assert metric(stack, "orchestrator", "qorch_dead_letters_total", source="orchestrator") == 1

        # the trace, each line naming the job and the fragment: one attempt, started and failed
        # on an agent, and the final failure in the orchestrator's log
        nodes = [s.name for s in stack.services if s.name.startswith("node-")]
        started = [
            line
            for node in nodes
            for line in log_records(stack, node, "fragment started")
            if line.get("fragment_id") == poison_fragment
        ]
        assert [(line["job_id"], "(attempt 1," in line["line"]) for line in started] == [
            (poison_id, True)
        ]
        failures = [
            line
            for node in nodes
            for line in log_records(stack, node, "fragment failed")
            if line.get("fragment_id") == poison_fragment
        ]
        assert len(failures) == 1 and "ZeroDivisionError" in failures[0]["line"]
        assert not log_records(stack, "orchestrator", "fragment dispatched again")
        gave_up = log_records(stack, "orchestrator", "job failed: program 0, bindings 2-2")
        assert [(g["job_id"], g["fragment_id"]) for g in gave_up] == [(poison_id, poison_fragment)]


def test_a_straggler_is_overtaken_and_its_late_result_ignored(fault_run: FaultRun) -> None:
    with fault_run(
        fragment_bindings=12,  # fragments long enough to catch an agent in the middle of one
        fragment_timeout_s=3.0,
    ) as (stack, client):
        spec = demo_job(72, seed=51)
        job_id = client.submit(spec)["id"]
        freeze_mid_fragment(stack, "node-1")  # a straggler: it holds its fragment, silent
        try:
            done = wait_for_status(client, job_id)
        finally:
            stack.signal("node-1", signal.SIGCONT)
        assert done["status"] == "SUCCEEDED"
        first = values(client, job_id)
        assert first == expected_values(spec)

        # the straggler wakes up, finishes and publishes: its result is dropped, nothing changes
        wait_until(
            lambda: metric(stack, "orchestrator", "qorch_duplicates_dropped_total") >= 1,
            timeout=60,
            what="the late result to be dropped",
        )
        assert values(client, job_id) == first
        assert client.job(job_id)["progress"]["fragments_done"] == 6


def test_duplicated_and_reordered_results_never_change_a_result(fault_run: FaultRun) -> None:
    with fault_run() as (stack, client):
        settings = stack.settings
        results_topic = settings.topic("results")
        first = demo_job(20, seed=61)
        first_id = client.submit(first)["id"]
        assert wait_for_status(client, first_id)["status"] == "SUCCEEDED"
        first_events = list(client.watch(first_id))

        second = demo_job(60, seed=62)
        second_id = client.submit(second)["id"]
        wait_for_progress(client, second_id, 4)
        # every result on the topic so far (the first job's, some of the second's) ...
        seen = read_all(settings, results_topic, signed_result, 14)
        # ... again, twice each, shuffled, plus a stale failure and a forged success (wrong
        # values) for each: all after the real ones on their job's partition, and signed by an
        # enrolled agent of the pool (a compromised one: unsigned ones do not even get read)
        injected = seen * 2 + forged_failures(seen) + forged_successes(seen)
        assert len(injected) == 4 * len(seen)
        random.Random(7).shuffle(injected)
        inject(settings, results_topic, [(r.job_id, r) for r in injected], insider(client))

        assert wait_for_status(client, second_id)["status"] == "SUCCEEDED"
        assert values(client, first_id) == expected_values(first)
        assert values(client, second_id) == expected_values(second)
        assert list(client.watch(first_id)) == first_events  # not even an event was added
        second_events = list(client.watch(second_id))
        assert sum(e.type == "progress" for e in second_events) == 30
        assert not any(e.type == "redispatched" for e in second_events)
        wait_until(
            lambda: (
                metric(stack, "orchestrator", "qorch_duplicates_dropped_total")
                >= len(injected) - len(seen)
            ),
            timeout=60,
            what="the injected results to be dropped",
        )
