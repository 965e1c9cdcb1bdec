"""The whole path: HTTP submission, Kafka, two node agents, aggregation, gRPC watching.

Every component is real: Postgres, the Kafka-protocol broker, the API, the orchestrator and two
agents as separate processes, circuits on Braket's LocalSimulator.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from api.app import create_app
from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.client import QorchClient
from qorch.samples import demo_job, ring_observables, variational_program
from qorch.stack import Stack
from tests.support.circuits import direct_expectations, direct_probabilities
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        database_url, kafka_bootstrap, tmp_path_factory, fragment_bindings=4
    ) as stack:
        yield stack


def run_to_end(client: QorchClient, spec: dict[str, Any]) -> tuple[str, list[jobs_pb2.JobEvent]]:
    job = client.submit(spec)
    assert job["status"] == "QUEUED"
    return job["id"], list(client.watch(job["id"]))


def test_exact_job_matches_local_simulator_and_is_watchable(
    client: QorchClient, stack: Stack
) -> None:
    spec = demo_job(40)
    job_id, events = run_to_end(client, spec)

    # the stream: every event once, in order, ending with the final one
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "submitted" and events[-1].type == "succeeded"
    assert events[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED
    assert events[-1].bindings_done == events[-1].bindings_total == 40
    assert sum(e.type == "progress" for e in events) == 10  # 40 bindings / 4 per fragment

    result = client.result(job_id)["result"]
    values = result["programs"][0]["values"]
    program = spec["programs"][0]
    for binding, got in zip(program["bindings"], values, strict=True):
        assert got == direct_expectations(program["source"], binding, ring_observables())

    # a watcher that joins late gets the whole history; one that resumes misses nothing
    assert list(client.watch(job_id)) == events
    assert list(client.watch(job_id, from_seq=3)) == events[3:]

    job = client.job(job_id)
    assert job["status"] == "SUCCEEDED" and job["progress"]["fragments_done"] == 10
    assert job["timings"]["run_s"] is not None


def test_both_agents_did_work(client: QorchClient) -> None:
    run_to_end(client, demo_job(64))

    def busy_nodes() -> list[dict[str, Any]] | None:
        nodes = client.nodes()["data"]
        busy = [n for n in nodes if n["fragments_done"] > 0]
        return nodes if len(busy) == 2 else None

    nodes = wait_until(busy_nodes, timeout=15, what="both agents reporting work")
    # The session's database is shared: other tests' nodes (no work done) may be listed too.
    mine = [n for n in nodes if n["id"] in {"node-1", "node-2"}]
    assert {n["id"] for n in nodes if n["fragments_done"] > 0} == {"node-1", "node-2"}
    assert len(mine) == 2
    assert all(n["pool"] == "local-sv" and n["state"] == "RUNNING" for n in mine)


def test_probabilities_exact_and_counts_within_bound(client: QorchClient) -> None:
    source = variational_program(3)
    bindings = [{f"t{i}": 0.3 * (i + 1) + k for i in range(6)} for k in range(3)]
    exact_id, _ = run_to_end(
        client,
        {
            "result": {"type": "probabilities"},
            "programs": [{"source": source, "bindings": bindings}],
        },
    )
    shots = 2000
    counts_id, _ = run_to_end(
        client,
        {
            "shots": shots,
            "result": {"type": "counts"},
            "programs": [{"source": source, "bindings": bindings}],
        },
    )
    exact = client.result(exact_id)["result"]["programs"][0]["values"]
    counted = client.result(counts_id)["result"]["programs"][0]["values"]
    for binding, probs, counts in zip(bindings, exact, counted, strict=True):
        reference = direct_probabilities(source, binding)
        for index, p in enumerate(reference):
            state = format(index, "03b")
            assert probs.get(state, 0.0) == p
            # each count is binomial(shots, p): 5 standard deviations, plus a small floor
            bound = 5 * math.sqrt(p * (1 - p) / shots) + 2 / shots
            assert abs(counts.get(state, 0) / shots - p) <= bound, (state, counts, p)
        assert sum(counts.values()) == shots


def _auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def _metadata(stack: Stack) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {stack.admin_key}"),)


def test_bad_jobs_are_refused_with_the_field_and_nothing_is_stored(
    client: QorchClient, stack: Stack
) -> None:
    before = client.jobs()["count"]
    bad = demo_job(2)
    bad["programs"][0]["bindings"][1].pop("t3")
    response = httpx.post(f"{stack.api_url}/v1/jobs", json=bad, headers=_auth(stack))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "programs", 0, "bindings", 1]
    assert "missing ['t3']" in detail[0]["msg"]

    bad = demo_job(2)
    bad["programs"][0]["source"] = bad["programs"][0]["source"].replace("cnot", "cnott", 1)
    response = httpx.post(f"{stack.api_url}/v1/jobs", json=bad, headers=_auth(stack))
    assert response.status_code == 422
    assert "cnott" in response.json()["detail"][0]["msg"]

    response = httpx.post(
        f"{stack.api_url}/v1/jobs", json={"programs": "nope"}, headers=_auth(stack)
    )
    assert response.status_code == 422
    assert client.jobs()["count"] == before


def test_cancel_stops_the_job(client: QorchClient) -> None:
    job = client.submit(demo_job(2000))
    cancelled = client.cancel(job["id"])
    assert cancelled["status"] == "CANCELLED"
    events = list(client.watch(job["id"]))
    assert events[-1].type == "cancelled"
    with pytest.raises(Exception, match="409"):
        client.cancel(job["id"])
    with pytest.raises(Exception, match="409"):
        client.result(job["id"])


def test_grpc_errors_are_clear(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(jobs_pb2.GetJobRequest(job_id="not-a-uuid"), metadata=_metadata(stack))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            list(
                stub.WatchJob(
                    jobs_pb2.WatchJobRequest(job_id="00000000-0000-0000-0000-000000000000"),
                    metadata=_metadata(stack),
                )
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_docs(stack: Stack) -> None:
    base = stack.api_url
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz").json()
    assert ready["status"] == "ready" and set(ready["checks"]) == {"postgres", "kafka"}
    # tests/unit/test_openapi_docs.py checks every field's description and every example of
    # the app's schema; the running API must serve that very schema.
    schema = httpx.get(f"{base}/openapi.json").json()
    assert schema == create_app(stack.settings).openapi()
    assert httpx.get(f"{base}/docs").status_code == 200


def test_unknown_job_is_404(client: QorchClient) -> None:
    with pytest.raises(Exception, match="404"):
        client.job("00000000-0000-0000-0000-000000000000")
