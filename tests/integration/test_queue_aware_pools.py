"""Queue-aware pools at the AWS boundary (issue 16): an ``aws-*`` agent reads its device's status,
queue depth and execution windows from Braket's GetDevice, its heartbeats carry them, the
orchestrator stores them and ``GET /v1/pools`` shows them; a job that names several pools passes
over one whose device is OFFLINE, and starts on it once it is ONLINE again; and every task of a
pool with a Braket reservation is created in that reservation.

Braket's API is the stand-in of ``tests/support/braket_api.py`` over real HTTP (its GetDevice
says what each test sets), S3 is moto's server; the API is served over HTTP, and the
orchestrator and the agents are the real ones, on real Postgres and the real broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nodes.agent import NodeAgent
from nodes.executors.aws import AwsDeviceExecutor
from nodes.executors.factory import executor_for_pool
from orchestrator.service import Orchestrator
from proto.qorch.v1 import fragments_pb2 as pb
from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.device_status import device_row
from qorchestra.kafka import ensure_topics
from tests.support.agents import running
from tests.support.api import RunningApi, running_api
from tests.support.braket_api import BraketStandIn, moto_s3, use_loopback_aws
from tests.support.settings import enrolled, make_settings
from tests.support.stored_jobs import stored_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BUCKET = "amazon-braket-qorch-pools"
REGION = "us-west-2"
RESERVATION = (
    "arn:aws:braket:us-west-2:123456789012:reservation/5f3c2a1b-0d4e-4f6a-8b7c-9d0e1f2a3b4c"
)
DEADLINE_S = 60.0

#: What Braket's GetDevice says of a busy QPU's queues (as the SDK's docstring shows them).
QUEUE_INFO = [
    {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": "13", "queuePriority": "Normal"},
    {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": ">4000", "queuePriority": "Priority"},
    {"queue": "JOBS_QUEUE", "queueSize": "0 (1 prioritized job(s) running)"},
]
WINDOWS = [
    {"executionDay": "Weekdays", "windowStartHour": "09:00:00", "windowEndHour": "17:30:00"},
    {"executionDay": "Saturday", "windowStartHour": "22:00:00", "windowEndHour": "02:00:00"},
]

BELL = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"


@pytest.fixture
def braket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[BraketStandIn]:
    """A device whose GetDevice reports its queues (and the local simulator's window:
    every day, all day); boto3 pointed at it."""
    with moto_s3(BUCKET, REGION) as s3_endpoint:
        stand_in = BraketStandIn(s3_endpoint, SV1, queue_info=QUEUE_INFO)
        with stand_in:
            use_loopback_aws(monkeypatch, tmp_path, s3_endpoint, stand_in.url)
            yield stand_in


def test_the_executor_reads_status_queue_and_windows_from_getdevice(
    braket: BraketStandIn,
) -> None:
    executor = AwsDeviceExecutor(SV1, BUCKET, "pools", REGION)
    braket.device_status, braket.execution_windows = "OFFLINE", WINDOWS
    row = device_row(executor.device_state(), datetime.now(UTC))
    assert row is not None
    assert row["status"] == "OFFLINE"
    assert row["queue"] == {"tasks": 13, "priority_tasks": 4000, "jobs": 0}
    assert row["windows"] == [
        {"day": "Weekdays", "start_s": 9 * 3600, "end_s": 17 * 3600 + 1800},
        {"day": "Saturday", "start_s": 22 * 3600, "end_s": 2 * 3600},
    ]
    # ``AwsDevice.queue_depth()`` is a GetDevice of its own
    assert [c.operation for c in braket.snapshot()] == ["GetDevice", "GetDevice"]

    braket.queue_info = None  # a device whose queue Braket does not describe
    row = device_row(executor.device_state(), datetime.now(UTC))
    assert row is not None and row["queue"] is None and row["status"] == "OFFLINE"


def _fragment() -> pb.Fragment:
    return pb.Fragment(
        fragment_id=str(uuid.uuid4()),
        job_id=str(uuid.uuid4()),
        attempt=1,
        pool="aws-sv1",
        program=BELL,
        bindings=[pb.Binding(), pb.Binding()],
        shots=10,
        result_kind=pb.RESULT_KIND_COUNTS,
        qubits=2,
    )


def test_every_task_of_a_pool_with_a_reservation_is_created_in_it(
    braket: BraketStandIn,
) -> None:
    settings = make_settings(
        aws_s3_bucket=BUCKET,
        aws_region=REGION,
        aws_reservations={"aws-sv1": RESERVATION},
    )
    executor = executor_for_pool("aws-sv1", settings)  # as the agent builds it
    results = executor.execute(_fragment())
    assert [sum(r.counts.counts.values()) for r in results] == [10, 10]
    bodies = [task.request for task in braket.created()]
    assert bodies, "no task created"
    association = [{"arn": RESERVATION, "type": "RESERVATION_TIME_WINDOW_ARN"}]
    assert all(body["associations"] == association for body in bodies), bodies

    plain = executor_for_pool("aws-sv1", settings.model_copy(update={"aws_reservations": {}}))
    plain.execute(_fragment())
    later = [task.request for task in braket.created()][len(bodies) :]
    assert later and all("associations" not in body for body in later), later


def test_a_reservation_must_be_a_braket_reservation_arn_of_an_aws_pool() -> None:
    with pytest.raises(ValueError, match="not a Braket reservation ARN"):
        make_settings(aws_reservations={"aws-sv1": "arn:aws:s3:::bucket"})
    with pytest.raises(ValueError, match="not an aws-\\* pool"):
        make_settings(aws_reservations={"local-sv": RESERVATION})


@pytest.fixture
def api(fresh_database: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API and an orchestrator on a database of their own; agents read their device
    five times a second."""
    with running_api(
        fresh_database,
        kafka_bootstrap,
        node_offline_after_s=3.0,
        aws_s3_bucket=BUCKET,
        aws_region=REGION,
        device_status_interval_s=0.2,
        tenant_budget_usd=100.0,
    ) as served:
        ensure_topics(served.settings, ["aws-sv1"])
        served.keys["user"] = served.new_key(f"qpu-{uuid.uuid4().hex[:8]}", ["submit", "read"])
        with running(Orchestrator(served.settings)):
            yield served


def agent_settings(api: RunningApi, pool: str) -> Settings:
    """An agent's settings: a credential enrolled for ``pool``, a node id of its own."""
    return enrolled(api.settings, pool).model_copy(update={"node_id": f"{pool}-agent"})


def pool(api: RunningApi, name: str) -> dict[str, Any]:
    answer = api.call("GET", "/v1/pools", api.keys["user"])
    assert answer.status_code == 200, answer.text
    [found] = [p for p in answer.json()["data"] if p["name"] == name]
    return found


def events(api: RunningApi, job_id: str) -> list[tuple[str, str]]:
    return stored_events(api.settings.database_url, job_id)


def finished(api: RunningApi, job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] = api.call("GET", f"/v1/jobs/{job_id}", api.keys["user"]).json()
    return job if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None


def test_a_job_passes_over_an_offline_device_and_uses_it_once_online(
    api: RunningApi, braket: BraketStandIn
) -> None:
    braket.device_status = "OFFLINE"
    spec = {**demo_job(2), "pool": ["aws-sv1", "local-sv"], "shots": 10, "max_cost_usd": 5.0}
    with (
        running(NodeAgent(agent_settings(api, "aws-sv1"), "aws-sv1")),
        running(NodeAgent(agent_settings(api, "local-sv"), "local-sv")),
    ):
        shown = wait_until(
            lambda: (p := pool(api, "aws-sv1"))["device"] and p,
            timeout=DEADLINE_S,
            what="the device's report in GET /v1/pools",
        )
        assert (shown["online"], shown["offline_reason"]) == (False, "device OFFLINE")
        assert shown["agents_live"] == 1
        device = shown["device"]
        assert device["status"] == "OFFLINE"
        assert device["queue"] == {"tasks": 13, "priority_tasks": 4000, "jobs": 0}
        assert device["execution_windows"] == [
            {"day": "Everyday", "start": "00:00:00", "end": "23:59:59"}
        ]
        assert device["observed_at"] is not None
        assert pool(api, "local-sv")["device"] is None  # the local simulator has none

        answer = api.call("POST", "/v1/jobs", api.keys["user"], json=spec)
        assert answer.status_code == 201, answer.text
        assert answer.json()["pools"] == ["aws-sv1", "local-sv"]
        first = answer.json()["id"]
        done = wait_until(lambda: finished(api, first), timeout=DEADLINE_S, what="job 1")
        assert (done["status"], done["pool"]) == ("SUCCEEDED", "local-sv")
        chosen = [m for kind, m in events(api, first) if kind == "pool_chosen"]
        assert chosen == ["runs on pool local-sv (not online: aws-sv1: device OFFLINE)"]
        assert braket.log("CreateQuantumTask") == []

        braket.device_status = "ONLINE"
        wait_until(lambda: pool(api, "aws-sv1")["online"], timeout=DEADLINE_S, what="online")
        answer = api.call("POST", "/v1/jobs", api.keys["user"], json=spec)
        assert answer.status_code == 201, answer.text
        second = answer.json()["id"]
        done = wait_until(lambda: finished(api, second), timeout=DEADLINE_S, what="job 2")
        assert (done["status"], done["pool"]) == ("SUCCEEDED", "aws-sv1"), done
        chosen = [m for kind, m in events(api, second) if kind == "pool_chosen"]
        assert chosen == ["runs on pool aws-sv1 (its first choice)"]
        assert braket.log("CreateQuantumTask"), "the job ran on the device"
