"""``qorch up`` keeps the stack up: a service that dies is started again, with backoff, and the
platform goes on working (issue 15). The real stack, real processes, SIGKILL."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from qorch.client import QorchClient
from qorch.samples import demo_job
from qorch.stack import Stack
from qorch.supervisor import RestartPolicy, Supervisor, restart_delay
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(database_url, kafka_bootstrap, tmp_path_factory) as stack:
        yield stack


def pid(stack: Stack, name: str) -> int:
    proc = stack.service(name).proc
    assert proc is not None
    return proc.pid


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_s=1.0, max_s=10.0)
    assert [restart_delay(n, policy) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_killed_services_are_started_again_and_jobs_still_run(
    stack: Stack, client: QorchClient, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = Supervisor(stack, RestartPolicy(first_s=0.2))
    supervisor.check()  # nothing to do: everything runs
    assert supervisor.restarts == 0
    before = {name: pid(stack, name) for name in ("orchestrator", "node-1")}
    for name in before:
        stack.signal(name, signal.SIGKILL)

    def restarted() -> bool:
        supervisor.check()
        return all(
            pid(stack, name) != old and stack.service(name).proc.poll() is None  # type: ignore[union-attr]
            for name, old in before.items()
        )

    wait_until(restarted, timeout=DEADLINE_S, interval=0.1, what="both services started again")
    assert supervisor.restarts == 2
    assert "orchestrator exited with -9" in caplog.text
    assert "node-1 started again" in caplog.text

    # the new node-1 is the same agent, with the credential qorch up enrolled for it
    wait_until(
        lambda: any(
            n["id"] == "node-1" and n["pid"] == pid(stack, "node-1") and n["state"] == "RUNNING"
            for n in client.nodes()["data"]
        ),
        timeout=DEADLINE_S,
        what="node-1's heartbeats from its new process",
    )
    job_id = client.submit(demo_job(8))["id"]

    def finished() -> str | None:
        status: str = client.job(job_id)["status"]
        return status if status in ("SUCCEEDED", "FAILED") else None

    assert wait_until(finished, timeout=DEADLINE_S, what="a job after the restarts") == (
        "SUCCEEDED"
    )
