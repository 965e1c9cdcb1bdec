"""What the SDK sends: job specs from circuits and options, an Idempotency-Key on every
submission that its retries reuse, which requests are sent again and when, and how a watch
decides to resume. The API is an httpx mock transport here (tests/integration/test_sdk.py uses
a real one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from qorch.cli import cost_line
from qorch.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    Cost,
    JobStatus,
    NotFound,
    Timeout,
    Unavailable,
    ValidationFailed,
)
from qorch.client._models import JobEvent
from qorch.client._retry import Resumption, RetryPolicy
from qorch.client._specs import circuits_spec, optimisation_spec

BELL = "OPENQASM 3.0;\ninput float theta;\nqubit[2] q;\nry(theta) q[0];\ncnot q[0], q[1];\n"

Handler = Callable[[httpx.Request], httpx.Response]


def job_json(job_id: str = "j1", status: str = "QUEUED") -> dict[str, Any]:
    return {
        "id": job_id,
        "name": "",
        "kind": "circuits",
        "pool": "local-sv",
        "status": status,
        "error": None,
        "waiting": None,
        "result_type": "expectation",
        "progress": {
            "fragments_done": 0,
            "fragments_total": 0,
            "bindings_done": 0,
            "bindings_total": 2,
            "percent": 0.0,
            "redispatches": 0,
        },
        "timings": {
            "created_at": "2026-12-04T10:00:00.123456Z",
            "started_at": None,
            "finished_at": None,
            "queued_s": None,
            "run_s": None,
        },
        "last_seq": 1,
        "cutting": None,
        "warnings": [],
        "added_by_a_newer_api": True,
    }


@pytest.fixture
def client_with() -> Iterator[Callable[[Handler], Client]]:
    """A Client whose requests go to ``handler``; retries without pauses."""
    made: list[Client] = []

    def make(handler: Handler) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        client = Client("http://api.test", "qk_test", "localhost:1", http_client=http)
        client._policy = RetryPolicy(max_retries=2, base_s=0.0)  # no pauses
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_a_submission_carries_a_new_key_that_its_retries_reuse(
    client_with: Callable[[Handler], Client],
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ConnectError("connection reset", request=request)
        if len(seen) == 2:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(201, json=job_json())

    client = client_with(handler)
    job = client.submit(BELL, bindings=[{"theta": 0.5}], observables=["ZZ"])

    assert job.id == "j1" and job.status is JobStatus.QUEUED
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert seen[0].headers["Authorization"] == "Bearer qk_test"

    client.submit(BELL, bindings=[{"theta": 0.5}], observables=["ZZ"])
    assert seen[-1].headers["Idempotency-Key"] != seen[0].headers["Idempotency-Key"]
    client.submit(BELL, idempotency_key="order-42")
    assert seen[-1].headers["Idempotency-Key"] == "order-42"


def test_reads_are_retried_and_writes_that_could_repeat_work_are_not(
    client_with: Callable[[Handler], Client],
) -> None:
    calls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        return httpx.Response(503, json={"detail": "database unavailable"})

    client = client_with(handler)
    with pytest.raises(Unavailable):
        client.job("j1")
    with pytest.raises(Unavailable):
        client.cancel("j1")
    with pytest.raises(Unavailable):
        client.create_key("research")
    assert calls == {"/v1/jobs/j1": 3, "/v1/jobs/j1/cancel": 1, "/v1/keys": 1}


def test_a_refusal_is_not_retried_and_a_dead_api_is_connection_failed(
    client_with: Callable[[Handler], Client],
) -> None:
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        detail = [{"loc": ["body", "shots"], "msg": "at most 100000 shots", "type": "x"}]
        return httpx.Response(422, json={"detail": detail})

    with pytest.raises(ValidationFailed) as refused:
        client_with(refuse).submit(BELL, shots=10**9)
    assert len(calls) == 1 and refused.value.errors[0].loc == ("body", "shots")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ConnectionFailed, match=r"cannot reach the API at http://api\.test"):
        client_with(down).jobs()


def test_answers_are_typed_and_keep_what_the_api_sent(
    client_with: Callable[[Handler], Client],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.raw_path == b"/v1/jobs/j%2F1":
            return httpx.Response(404, json={"detail": "job j/1 not found"})
        return httpx.Response(200, json={"data": [job_json("a"), job_json("b")], "count": 7})

    client = client_with(handler)
    page = client.jobs(status="QUEUED", limit=2)
    assert [j.id for j in page.data] == ["a", "b"] and page.count == 7
    first = page.data[0]
    assert first.timings.created_at.tzinfo is not None and first.progress.bindings_total == 2
    assert first.to_dict()["added_by_a_newer_api"] is True
    with pytest.raises(NotFound):  # an id cannot reach another route
        client.job("j/1")


def test_a_jobs_cost_reads_and_an_older_api_without_it_reads_as_none(
    client_with: Callable[[Handler], Client],
) -> None:
    paid = {**job_json("p", "SUCCEEDED"), "cost": {"estimate_usd": 0.95, "actual_usd": 0.9435}}
    answers = {"/v1/jobs/p": paid, "/v1/jobs/old": job_json("old")}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path])

    client = client_with(handler)
    job = client.job("p")
    assert job.cost == Cost(estimate_usd=0.95, actual_usd=0.9435)
    assert cost_line(job.cost) == (
        "cost: estimate $0.95, actual $0.9435 ($0.0065 under the estimate)"
    )
    assert client.job("old").cost is None


def test_an_unknown_status_from_a_newer_api_reads() -> None:
    status = JobStatus("PAUSED")
    assert status == "PAUSED" and not status.terminal
    assert JobStatus("CANCELLED").terminal


def test_circuits_specs_from_programs_and_options() -> None:
    spec = circuits_spec(BELL, bindings=[{"theta": 0.1}, {"theta": 0.2}], observables=["ZZ"])
    assert spec == {
        "kind": "circuits",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": ["ZZ"]},
        "programs": [{"source": BELL, "bindings": [{"theta": 0.1}, {"theta": 0.2}]}],
    }
    assert circuits_spec(BELL, shots=100)["result"]["type"] == "counts"
    assert circuits_spec(BELL)["result"]["type"] == "probabilities"

    two = circuits_spec(
        [BELL, (BELL, [{"theta": 1.0}])],
        bindings=[{"theta": 0.0}],
        result="probabilities",
        pool="local-dm",
        name="pair",
        max_queue_s=60,
    )
    assert [p["bindings"] for p in two["programs"]] == [[{"theta": 0.0}], [{"theta": 1.0}]]
    assert (two["pool"], two["name"], two["max_queue_s"]) == ("local-dm", "pair", 60)


def test_a_whole_spec_takes_no_options_and_training_kinds_are_set() -> None:
    with Client("http://api.test") as client, pytest.raises(TypeError, match="shots"):
        client.submit({"kind": "circuits"}, shots=5)
    spec = optimisation_spec("train", {"name": "x", "seed": 1}, {"seed": 2, "pool": None})
    assert spec == {"name": "x", "seed": 2, "kind": "train"}
    with pytest.raises(ValueError, match="minimize job cannot have kind 'train'"):
        optimisation_spec("minimize", {"kind": "train"}, {})


def event(seq: int, status: str = "RUNNING") -> JobEvent:
    return JobEvent("j", seq, "progress", JobStatus(status), "", 0, 0, 0, 0, None)


def test_a_watch_resumes_after_the_last_event_with_growing_pauses() -> None:
    resume = Resumption(last_seq=0, retries=3)
    resume.seen(event(4))
    pauses = [resume.pause_after(grpc.StatusCode.UNAVAILABLE, "") for _ in range(3)]
    assert resume.last_seq == 4 and pauses == [0.4, 0.8, 1.6]
    with pytest.raises(Unavailable, match="after 3 attempts to resume"):
        resume.pause_after(grpc.StatusCode.UNAVAILABLE, "socket closed")

    resume.seen(event(5))  # an event: the count starts again
    assert resume.pause_after(grpc.StatusCode.INTERNAL, "RST_STREAM") == 0.4
    with pytest.raises(NotFound):  # a refusal is not resumed
        resume.pause_after(grpc.StatusCode.NOT_FOUND, "job j not found")


def test_a_watch_past_its_deadline_is_a_timeout() -> None:
    resume = Resumption(last_seq=0, deadline=0.0)
    with pytest.raises(Timeout):
        resume.remaining()
    with pytest.raises(Timeout):
        resume.pause_after(grpc.StatusCode.UNAVAILABLE, "")


def test_the_retry_policy_honours_retry_after_within_its_cap() -> None:
    policy = RetryPolicy(max_retries=2, base_s=0.5, cap_s=8.0)
    assert policy.pause(0, retry_after=3) == 3 and policy.pause(0, retry_after=60) == 8.0
    assert 0.25 <= policy.pause(0) <= 0.5 and 1.0 <= policy.pause(2) <= 2.0


def test_the_async_client_sends_the_same_requests() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(201, json=job_json())

    async def submit() -> str:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://api.test", "qk_test", http_client=http) as client:
            client._policy = RetryPolicy(max_retries=2, base_s=0.0)  # no pauses
            job = await client.submit({"kind": "circuits"}, idempotency_key="k-1")
            return job.id

    assert asyncio.run(submit()) == "j1"
    assert [r.headers["Idempotency-Key"] for r in seen] == ["k-1", "k-1"]
    assert seen[0].url == "http://api.test/v1/jobs"
    assert seen[0].headers["Authorization"] == "Bearer qk_test"
