"""Two orchestrators and two API processes on one database and broker: the orchestrator that
applies a job's results is SIGKILLed mid-job and the other one finishes the job.

Nothing is lost (an exact circuits job succeeds with the simulator's values, a training job with
the weights and metrics of an uninterrupted run), nothing is counted twice (every fragment and
binding once, one progress event per fragment), and the job's event history has no gap and no
repeat: a ``WatchJob`` stream through each API process, both opened from seq 0 before the kill,
receives seq 1..N once each, exactly the events Postgres stores.

Both jobs run on one stack, one after the other (a stack start is the expensive part): the
killed orchestrator is started again between them, so the training job also has two.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

import pytest

from proto.qorch.v1 import jobs_pb2
from qorch.client import QorchClient
from qorch.samples import demo_job
from qorch.stack import Stack
from tests.support.control_plane import (
    Watch,
    add_control_plane,
    client_of,
    counted_results,
    stored_events,
)
from tests.support.faults import (
    FAULT_SETTINGS,
    FaultRun,
    Trained,
    end,
    expected_values,
    fragment_statuses,
    metric,
    outbox_size,
    reference_training,
    serving,
    tiny_classifier,
    trained,
    training_steps,
    values,
    wait_for_status,
)
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

ORCHESTRATORS = ("orchestrator", "orchestrator-2")
#: Bindings of the exact circuits job: 2 a fragment under the fault settings, so 48 fragments
#: of the 6-qubit demo circuit, several seconds on two agents; at most 4 of them in flight, so
#: the survivor writes most of the job's windows itself.
BINDINGS = 96
IN_FLIGHT = 4
#: Each API process parses submitted programs in one worker process (default: two and a spare,
#: each importing Braket at start-up, several seconds of the machine's two cores apiece).
ONE_PARSER = {"parse_workers": 1, "parse_spare_workers": 0}
#: A training job of two epochs: 12 optimizer steps and 2 evaluations, about ten fragments each.
TRAINING = tiny_classifier(seed=5)
TRAINING["training"] = {**TRAINING["training"], "epochs": 2}
TRAINING_STEPS = 12


def kill_applier_mid_job(
    stack: Stack, since: dict[str, float], started: Callable[[], bool]
) -> tuple[str, str]:
    """Once ``started()`` holds, SIGKILL the orchestrator that applies the job's results (the
    only one running: the one whose counted results grew since ``since``); (victim, survivor)."""

    def applier() -> str | None:
        if not started():
            return None
        grew = {name: counted_results(stack, name) - since[name] for name in ORCHESTRATORS}
        busiest = max(grew, key=lambda name: grew[name])
        return busiest if grew[busiest] > 0 else None

    victim = wait_until(applier, timeout=90, interval=0.05, what="the job's results applied")
    end(stack, victim, signal.SIGKILL)
    return victim, next(name for name in ORCHESTRATORS if name != victim)


def check_history(
    stack: Stack, job_id: str, last_seq: int, streams: list[list[jobs_pb2.JobEvent]]
) -> list[jobs_pb2.JobEvent]:
    """Postgres holds seq 1..last_seq and ends with SUCCEEDED, and each stream (one through
    each API process) received exactly those events, in order; returns them."""
    stored = stored_events(stack, job_id)
    assert [e.seq for e in stored] == list(range(1, last_seq + 1))
    assert stored[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED
    for api, events in zip(("api", "api-2"), streams, strict=True):
        assert [e.seq for e in events] == list(range(1, last_seq + 1)), api
        assert events == stored, api
    return stored


def test_an_orchestrator_killed_mid_job_beside_another_loses_and_repeats_nothing(
    fault_run: FaultRun,
) -> None:
    spec = demo_job(BINDINGS, seed=21)
    reference = expected_values(spec)  # the simulator, run here: what a fault-free run gives
    trained_reference = reference_training(TRAINING, make_settings(**FAULT_SETTINGS))
    with fault_run(max_inflight_per_job=IN_FLIGHT, **ONE_PARSER) as (stack, client):
        api_2 = add_control_plane(stack, "api-2", "orchestrator-2")
        with client_of(stack, api_2) as client_2:
            circuits_job(stack, client, client_2, spec, reference)
            training_job(stack, client, client_2, trained_reference)


def circuits_job(
    stack: Stack,
    client: QorchClient,
    client_2: QorchClient,
    spec: dict[str, object],
    reference: list[list[float]],
) -> None:
    since = {name: counted_results(stack, name) for name in ORCHESTRATORS}
    job_id = str(client_2.submit(spec)["id"])  # through the second API process
    watches = [Watch(c, job_id).start() for c in (client, client_2)]
    victim, survivor = kill_applier_mid_job(
        stack, since, lambda: client.job(job_id)["progress"]["fragments_done"] >= 4
    )
    at_kill = client_2.job(job_id)
    total = at_kill["progress"]["fragments_total"]
    assert total == BINDINGS // 2
    assert at_kill["status"] == "RUNNING"
    assert 0 < at_kill["progress"]["fragments_done"] < total, at_kill["progress"]

    # The survivor takes the job's results over alone; then the killed one is started again
    # (it boots while the job ends), so the training job has two orchestrators too.
    wait_until(
        lambda: counted_results(stack, survivor) > since[survivor],
        timeout=60,
        what=f"{survivor} counting the job's results",
    )
    stack.restart(victim)
    job = wait_for_status(client, job_id, timeout=90)
    streams = [w.join(timeout=30) for w in watches]
    # nothing lost: the job succeeded with the values of a fault-free run
    assert job["status"] == "SUCCEEDED", job["error"]
    assert values(client, job_id) == reference
    # nothing counted twice: every fragment and binding once, one progress event each
    progress = job["progress"]
    assert progress["fragments_done"] == progress["fragments_total"] == total
    assert progress["bindings_done"] == progress["bindings_total"] == BINDINGS
    assert fragment_statuses(stack, job_id) == {"done": total}
    assert outbox_size(stack, job_id) == 0
    stored = check_history(stack, job_id, job["last_seq"], streams)
    kinds = Counter(e.type for e in stored)
    assert kinds == {"submitted": 1, "running": 1, "progress": total, "succeeded": 1}, kinds
    assert [e.fragments_done for e in stored if e.type == "progress"] == list(range(1, total + 1))
    dropped = metric(stack, survivor, "qorch_duplicates_dropped_total")
    print(
        f"circuits: {victim} killed at {at_kill['progress']['fragments_done']}/{total} "
        f"fragments; {survivor} dropped {dropped:.0f} duplicate result(s); {len(stored)} events"
    )


def training_job(
    stack: Stack, client: QorchClient, client_2: QorchClient, reference: Trained
) -> None:
    wait_until(
        lambda: all(serving(stack, name) for name in ORCHESTRATORS),
        timeout=120,
        what="both orchestrators serving",
    )
    since = {name: counted_results(stack, name) for name in ORCHESTRATORS}
    job_id = str(client.submit(TRAINING)["id"])  # through the first API process this time
    watches = [Watch(c, job_id).start() for c in (client, client_2)]
    victim, survivor = kill_applier_mid_job(
        stack, since, lambda: training_steps(client, job_id) >= 2
    )
    steps = training_steps(client_2, job_id)
    at_kill = client_2.job(job_id)
    assert at_kill["status"] == "RUNNING", at_kill
    assert 2 <= steps < TRAINING_STEPS, steps

    job = wait_for_status(client, job_id, timeout=90)
    streams = [w.join(timeout=30) for w in watches]
    assert job["status"] == "SUCCEEDED", job["error"]
    assert trained(client, job_id) == reference  # each step taken once, none lost
    assert job["progress"]["fragments_done"] == job["progress"]["fragments_total"]
    stored = check_history(stack, job_id, job["last_seq"], streams)
    assert counted_results(stack, survivor) > since[survivor]
    print(
        f"training: {victim} killed after {steps} steps; {survivor} finished; {len(stored)} events"
    )
