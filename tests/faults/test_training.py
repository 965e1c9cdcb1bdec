"""Training jobs under the faults of the other fault tests: each ends, in exact mode, with the
weights and the metrics of an uninterrupted run of the same seed (computed in this process).

A training step advances once: its last fragment's result, the optimizer step, the checkpoint,
the metrics and the next step's fragments commit in one transaction under the job's row lock,
so neither a redelivered result nor a second orchestrator can step it twice.
"""

from __future__ import annotations

import random
import signal
import uuid

import pytest

from qorch.client import QorchClient
from qorch.stack import Stack
from tests.support.faults import (
    FAULT_SETTINGS,
    FaultRun,
    Trained,
    api_ready,
    end,
    forged_failures,
    fragment_statuses,
    inject,
    insider,
    metric,
    read_all,
    reference_training,
    serving,
    signed_result,
    tiny_classifier,
    trained,
    wait_for_status,
    wait_for_steps,
)
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

SPEC = tiny_classifier(seed=3)


@pytest.fixture(scope="module")
def reference() -> Trained:
    """The uninterrupted run of SPEC, as the fault tests' stacks would plan it."""
    return reference_training(SPEC, make_settings(**FAULT_SETTINGS))


def start_training(client: QorchClient, steps: int = 2) -> str:
    """Submit SPEC and wait until it has taken ``steps`` optimizer steps."""
    job_id = str(client.submit(SPEC)["id"])
    wait_for_steps(client, job_id, steps)
    return job_id


def check_training(client: QorchClient, job_id: str, reference: Trained) -> None:
    """The job succeeded with the reference's weights and metrics, each step counted once."""
    job = wait_for_status(client, job_id)
    assert job["status"] == "SUCCEEDED", job["error"]
    assert trained(client, job_id) == reference
    assert job["progress"]["fragments_done"] == job["progress"]["fragments_total"]


def unanswered(stack: Stack, job_id: str) -> int:
    """The job's fragments that were published and not answered yet (read from Postgres)."""
    return fragment_statuses(stack, job_id).get("dispatched", 0)


def test_a_broker_restarted_empty_mid_training_resends_the_step_from_postgres(
    fault_run: FaultRun, reference: Trained
) -> None:
    with fault_run(own_broker=True) as (stack, client):
        job_id = start_training(client)
        # Both agents stopped in their tracks: the step's published fragments stay unanswered,
        # so the broker's loss surely takes some of them with it.
        for node in ("node-1", "node-2"):
            stack.signal(node, signal.SIGSTOP)
        try:
            wait_until(lambda: unanswered(stack, job_id), timeout=60, what="fragments out")
            stack.stop_broker()  # topics, messages, offsets and groups are gone
            stack.start_broker()
        finally:
            for node in ("node-1", "node-2"):
                stack.signal(node, signal.SIGCONT)

        check_training(client, job_id, reference)
        assert metric(stack, "orchestrator", "qorch_broker_resets_total") >= 1
        assert metric(stack, "orchestrator", "qorch_fragments_resent_total") >= 1


def test_postgres_down_mid_training_then_training_resumes(
    fault_run: FaultRun, reference: Trained
) -> None:
    with fault_run(own_postgres=True) as (stack, client):
        job_id = start_training(client)
        stack.stop_postgres()
        try:
            wait_until(
                lambda: metric(stack, "orchestrator", "qorch_db_retries_total") > 0,
                timeout=30,
                what="the orchestrator retrying the database",
            )
            for name in ("api", "orchestrator", "node-1", "node-2"):
                proc = stack.service(name).proc
                assert proc is not None and proc.poll() is None, f"{name} died"
        finally:
            stack.start_postgres()

        check_training(client, job_id, reference)


def test_duplicates_under_two_orchestrators_never_step_training_twice(
    fault_run: FaultRun, reference: Trained
) -> None:
    with fault_run() as (stack, client):
        stack.add_service("orchestrator-2", ["orchestrator"])
        wait_until(lambda: serving(stack, "orchestrator-2"), timeout=120, what="orchestrator-2")
        job_id = start_training(client)
        settings = stack.settings
        results = settings.topic("results")
        done = client.job(job_id)["progress"]["fragments_done"]
        seen = read_all(settings, results, signed_result, done)
        agent = insider(client)  # an enrolled agent of the pool: its results are read
        # Every result so far twice more, and a forged failure for each, shuffled, under random
        # keys: they spread over every partition, so both orchestrators apply this job's
        # results at the same time (results are normally keyed by job id, one owner a job).
        injected = seen * 2 + forged_failures(seen)
        random.Random(7).shuffle(injected)
        inject(settings, results, [(str(uuid.uuid4()), r) for r in injected], agent)

        check_training(client, job_id, reference)

        def dropped(name: str) -> float:
            return metric(stack, name, "qorch_duplicates_dropped_total")

        def both_dropping() -> bool:
            # The group may still be handing orchestrator-2 its partitions: until both drop
            # duplicates, inject the same results again (more duplicates change nothing).
            if dropped("orchestrator") > 0 and dropped("orchestrator-2") > 0:
                return True
            inject(settings, results, [(str(uuid.uuid4()), r) for r in injected], agent)
            return False

        wait_until(
            both_dropping, timeout=90, interval=3.0, what="both orchestrators dropping duplicates"
        )
        assert trained(client, job_id) == reference  # and nothing moved afterwards


def test_an_agent_killed_then_sigterm_to_every_service_mid_training_changes_no_weight(
    fault_run: FaultRun, reference: Trained
) -> None:
    # one stack for both (a stack start is the expensive part): SIGKILL first, then SIGTERMs
    with fault_run() as (stack, client):
        job_id = start_training(client)
        end(stack, "node-2", signal.SIGKILL)  # its uncommitted fragments go to node-1
        wait_for_steps(client, job_id, 4)
        stack.restart("node-2")
        assert end(stack, "node-1") == 0  # finishes the fragment in hand, hands back the rest
        wait_for_steps(client, job_id, 6)
        assert end(stack, "orchestrator") == 0  # finishes its transaction, commits offsets
        assert client.job(job_id)["status"] == "RUNNING"  # only an orchestrator steps a job
        stack.restart("orchestrator")
        assert end(stack, "api") == 0  # drains its connections
        stack.restart("api")
        wait_until(lambda: api_ready(client), timeout=60, what="the API back")
        stack.restart("node-1")

        check_training(client, job_id, reference)


ADJOINT_SPEC = tiny_classifier(seed=5)
ADJOINT_SPEC["training"] |= {"gradient": "adjoint", "epochs": 10}


@pytest.fixture(scope="module")
def adjoint_reference() -> Trained:
    """The uninterrupted run of ADJOINT_SPEC (adjoint gradients computed in this process)."""
    return reference_training(ADJOINT_SPEC, make_settings(**FAULT_SETTINGS))


def hold_step(stack: Stack, job_id: str) -> None:
    """Stop both agents (SIGSTOP) with a step of the job published and unanswered."""
    for node in ("node-1", "node-2"):
        stack.signal(node, signal.SIGSTOP)
    wait_until(lambda: unanswered(stack, job_id), timeout=60, what="a step out, unanswered")


def test_adjoint_training_survives_an_agent_and_the_orchestrator_killed_mid_step(
    fault_run: FaultRun, adjoint_reference: Trained
) -> None:
    with fault_run() as (stack, client):
        job_id = str(client.submit(ADJOINT_SPEC)["id"])
        wait_for_steps(client, job_id, 2)
        hold_step(stack, job_id)
        end(stack, "node-2", signal.SIGKILL)  # what it held, uncommitted, goes to node-1
        stack.signal("node-1", signal.SIGCONT)
        steps = client.checkpoint(job_id)["state"]["step"]
        wait_for_steps(client, job_id, steps + 2)
        stack.restart("node-2")

        hold_step(stack, job_id)
        try:
            end(stack, "orchestrator", signal.SIGKILL)
            # the job as the kill left it: running, a step in flight, steps to go
            assert client.job(job_id)["status"] == "RUNNING"
            at_kill = client.checkpoint(job_id)
            assert at_kill["request"] is not None and at_kill["state"]["epoch"] < 10
            stack.restart("orchestrator")
        finally:
            for node in ("node-1", "node-2"):
                stack.signal(node, signal.SIGCONT)

        check_training(client, job_id, adjoint_reference)
