"""Paid quantum tasks under faults (issue 16, "never pay twice"): the whole stack as processes,
its agents serving ``aws-sv1`` against the Braket stand-in and moto's S3 on loopback
(``tests/support/braket_api.py``), which the agents reach through ``AWS_ENDPOINT_URL_BRAKET``
and ``AWS_ENDPOINT_URL_S3`` as they would reach AWS.

The stand-in holds every task QUEUED until the test releases it, so the kill lands while the
tasks wait in the device's queue, with no clock involved: the test waits on conditions (the
tasks recorded in Postgres, the stand-in's log showing the agent polling them) with deadlines.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qorch.stack import Stack
from qorchestra.store.db import make_engine
from qorchestra.store.models import Fragment, QuantumTaskRow
from tests.support.braket_api import BraketStandIn, Call, moto_s3, use_loopback_aws
from tests.support.faults import StackFactory, fragment_statuses, metric
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BUCKET = "amazon-braket-qorch-faults"
REGION = "us-west-2"
SHOTS = 10
BINDINGS = 8
#: Four bindings a fragment and two executables a task: two fragments of two tasks each, one
#: in flight at a time (the second is written once the first is answered).
FRAGMENT_BINDINGS, MAX_EXECUTABLES = 4, 2
TASKS_PER_FRAGMENT = FRAGMENT_BINDINGS // MAX_EXECUTABLES
CHUNKS = (BINDINGS // FRAGMENT_BINDINGS) * TASKS_PER_FRAGMENT

#: Six qubits, each flipped by its own input: binding i measures i's six bits in every shot.
BITS_PROGRAM = (
    "OPENQASM 3.0;\n"
    + "".join(f"input float t{k};\n" for k in range(6))
    + "qubit[6] q;\n"
    + "".join(f"rx(t{k}) q[{k}];\n" for k in range(6))
)


def bits(i: int) -> dict[str, float]:
    return {f"t{k}": math.pi * ((i >> (5 - k)) & 1) for k in range(6)}


JOB: dict[str, Any] = {
    "name": "never pay twice",
    "kind": "circuits",
    "pool": "aws-sv1",
    "shots": SHOTS,
    "max_cost_usd": 50.0,
    "result": {"type": "counts"},
    "programs": [{"source": BITS_PROGRAM, "bindings": [bits(i) for i in range(BINDINGS)]}],
}
EXPECTED = [{format(i, "06b"): SHOTS} for i in range(BINDINGS)]


@pytest.fixture
def braket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[BraketStandIn]:
    """The stand-in, holding tasks, and the environment every child of the stack inherits:
    loopback endpoints and credentials, nothing from this machine's AWS setup."""
    with moto_s3(BUCKET, REGION) as s3_endpoint:
        stand_in = BraketStandIn(s3_endpoint, SV1, max_executables=MAX_EXECUTABLES, hold=True)
        with stand_in:
            use_loopback_aws(monkeypatch, tmp_path, s3_endpoint, stand_in.url, max_attempts=None)
            yield stand_in


@contextmanager
def qpu_stack(
    fault_stack: StackFactory, database_url: str, kafka_bootstrap: str
) -> Iterator[tuple[Stack, httpx.Client]]:
    """The stack with two agents of ``aws-sv1``, and an admin's HTTP client of its API."""
    with fault_stack(
        pools=["aws-sv1", "aws-sv1"],
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        fragment_bindings=FRAGMENT_BINDINGS,
        max_inflight_per_job=1,
        aws_s3_bucket=BUCKET,
        aws_s3_prefix="faults",
        aws_region=REGION,
        tenant_budget_usd=100.0,
        # the agents report their tasks every 2 s; their CPU is not left to chance here
        node_idle_priority=False,
    ) as stack:
        auth = {"Authorization": f"Bearer {stack.admin_key}"}
        with httpx.Client(base_url=stack.api_url, headers=auth, timeout=30) as http:
            yield stack, http


def submit(http: httpx.Client) -> str:
    answer = http.post("/v1/jobs", json=JOB)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def status(http: httpx.Client, job_id: str) -> str:
    return str(http.get(f"/v1/jobs/{job_id}").json()["status"])


def recorded(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    """The job's recorded tasks, with their fragment's attempt, from Postgres."""
    engine = make_engine(stack.settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(QuantumTaskRow, Fragment.attempt.label("fragment_attempt"))
                .join(Fragment, Fragment.id == QuantumTaskRow.fragment_id)
                .where(QuantumTaskRow.job_id == job_id)
                .order_by(QuantumTaskRow.fragment_id, QuantumTaskRow.task_index)
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def show(calls: list[Call]) -> str:
    """The call log, one call a line (printed: the evidence the test rests on)."""
    return "\n".join(
        f"{i:3d} {c.operation:18s} {c.arn[-36:] or '-':36s} "
        f"{c.client_token or '':36s} {'created' if c.created else ''}"
        for i, c in enumerate(calls)
    )


def test_an_agent_killed_while_its_tasks_queue_is_resumed_without_a_second_task(
    fault_stack: StackFactory,
    fresh_database: str,
    kafka_bootstrap: str,
    braket: BraketStandIn,
) -> None:
    with qpu_stack(fault_stack, fresh_database, kafka_bootstrap) as (stack, http):
        job_id = submit(http)

        def held() -> tuple[str, list[str]] | None:
            """A fragment whose tasks are all recorded and polled by the agent that reported
            them (it polls only once its report is acknowledged and its offset committed):
            that agent's node id, and the tasks' ARNs."""
            polled = {c.arn for c in braket.log("GetQuantumTask")}
            by_fragment: dict[str, list[dict[str, Any]]] = {}
            for row in recorded(stack, job_id):
                by_fragment.setdefault(row["fragment_id"], []).append(row)
            for rows in by_fragment.values():
                arns = [r["arn"] for r in rows]
                if len(rows) == TASKS_PER_FRAGMENT and polled & set(arns):
                    return rows[0]["node_id"], arns
            return None

        victim, arns = wait_until(held, timeout=180, interval=0.1, what="tasks queued and polled")
        survivor = "node-2" if victim == "node-1" else "node-1"
        assert {t.status for t in braket.created() if t.arn in arns} == {"QUEUED"}
        kill_at = len(braket.snapshot())
        stack.signal(victim, signal.SIGKILL)
        proc = stack.service(victim).proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, timeout=30, what=f"{victim} to die")
        braket.release()

        wait_until(
            lambda: status(http, job_id) in ("SUCCEEDED", "FAILED", "CANCELLED"),
            timeout=180,
            interval=0.2,
            what="the job to finish",
        )
        calls = braket.snapshot()
        print(f"Braket stand-in call log (the kill of {victim} after call {kill_at - 1}):")
        print(show(calls))
        assert status(http, job_id) == "SUCCEEDED"
        result = http.get(f"/v1/jobs/{job_id}/result").json()["result"]
        assert result["programs"][0]["values"] == EXPECTED

        # exactly one CreateQuantumTask per chunk across the whole run, each a new task
        creates = [c for c in calls if c.operation == "CreateQuantumTask"]
        assert len(creates) == len(braket.created()) == CHUNKS
        assert all(c.created for c in creates)
        assert len({c.client_token for c in creates}) == CHUNKS
        # the survivor polled the dead agent's tasks after the kill and read their results
        after = {c.arn for c in calls[kill_at:] if c.operation == "GetQuantumTask"}
        assert set(arns) <= after
        rows = [r for r in recorded(stack, job_id) if r["arn"] in arns]
        assert {(r["node_id"], r["attempt"]) for r in rows} == {(survivor, 1)}
        assert min(r["reported_attempt"] for r in rows) >= 2  # resumed by a later attempt
        assert min(r["fragment_attempt"] for r in rows) >= 2
        assert fragment_statuses(stack, job_id) == {"done": BINDINGS // FRAGMENT_BINDINGS}
        assert metric(stack, survivor, "qorch_node_quantum_tasks_total", how="resumed") >= 2
        assert braket.log("CancelQuantumTask") == []


def test_cancelling_a_job_cancels_its_queued_tasks(
    fault_stack: StackFactory,
    fresh_database: str,
    kafka_bootstrap: str,
    braket: BraketStandIn,
) -> None:
    with qpu_stack(fault_stack, fresh_database, kafka_bootstrap) as (stack, http):
        job_id = submit(http)
        wait_until(lambda: recorded(stack, job_id), timeout=180, interval=0.1, what="tasks")
        answer = http.post(f"/v1/jobs/{job_id}/cancel")
        assert answer.status_code == 200, answer.text

        # The tasks of the fragment in flight, queued at the device, are cancelled by an agent
        # of the pool: the orchestrator queued the request on the pool's cancel topic.
        def all_cancelled() -> bool:
            tasks = braket.created()
            return len(tasks) == TASKS_PER_FRAGMENT and {t.status for t in tasks} == {"CANCELLED"}

        wait_until(all_cancelled, timeout=120, interval=0.2, what="every task cancelled")
        print(show(braket.snapshot()))
        assert status(http, job_id) == "CANCELLED"
        rows = recorded(stack, job_id)
        assert {r["arn"] for r in rows} == {t.arn for t in braket.created()}
        assert all(r["cancel_sent_at"] is not None for r in rows)
