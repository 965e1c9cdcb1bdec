"""A submission sent again with its ``Idempotency-Key`` never makes a second job: the API
answers it with the job the first one stored (201 then 200), per tenant, before any quota
counts it; the same key with another body is a 422 naming the header. Submissions with one key
that arrive at once store one job, whether they meet in one batch or in separate transactions
(the unique index settles it, and the loser answers with the winner's job). The SDK sends a key
with every submission and the same key when it sends it again, so a lost answer costs nothing.

Real API over HTTP, real Postgres (the shared database; each test its own tenant) and broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from api import use_cases
from qorch.client import Client, ValidationFailed
from qorch.samples import demo_job
from tests.support.api import RunningApi, running_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        yield running


@pytest.fixture
def key(api: RunningApi) -> str:
    """A key of a tenant of its own, to submit and read."""
    return api.new_key(f"idem-{uuid.uuid4().hex[:8]}", ["submit", "read"])


def submit(api: RunningApi, key: str, spec: dict[str, Any], idem: str) -> httpx.Response:
    return api.call("POST", "/v1/jobs", key, json=spec, headers={"Idempotency-Key": idem})


def jobs_of(api: RunningApi, key: str) -> list[str]:
    answer = api.call("GET", "/v1/jobs", key, params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return [job["id"] for job in answer.json()["data"]]


def test_a_repeated_submission_is_answered_with_the_job_the_first_stored(
    api: RunningApi, key: str
) -> None:
    idem = str(uuid.uuid4())
    first = submit(api, key, demo_job(2), idem)
    assert first.status_code == 201, first.text
    again = submit(api, key, demo_job(2), idem)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "QUEUED" and again.json()["warnings"] == []
    other = submit(api, key, demo_job(2), str(uuid.uuid4()))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert sorted(jobs_of(api, key)) == sorted([first.json()["id"], other.json()["id"]])


def test_the_same_key_with_another_body_is_a_422_naming_the_header(
    api: RunningApi, key: str
) -> None:
    with Client(api.url, key, api.grpc_target) as client:
        job = client.submit(demo_job(2), idempotency_key="order-1")
        with pytest.raises(ValidationFailed) as refused:
            client.submit(demo_job(3), idempotency_key="order-1")
    [error] = refused.value.errors
    assert error.loc == ("header", "Idempotency-Key")
    assert job.id in error.msg and "new key" in error.msg
    assert jobs_of(api, key) == [job.id]


def test_a_key_the_api_cannot_keep_is_refused_naming_the_header(api: RunningApi, key: str) -> None:
    for idem in ("x" * 256, "two words"):
        answer = submit(api, key, demo_job(2), idem)
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["detail"]
        assert error["loc"] == ["header", "Idempotency-Key"]
    assert jobs_of(api, key) == []


def test_keys_belong_to_their_tenant(api: RunningApi, key: str) -> None:
    other = api.new_key(f"idem-{uuid.uuid4().hex[:8]}", ["submit", "read"])
    mine = submit(api, key, demo_job(2), "shared-key")
    theirs = submit(api, other, demo_job(2), "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_repeat_is_answered_before_the_quotas_count(api: RunningApi) -> None:
    tenant = f"idem-{uuid.uuid4().hex[:8]}"
    key = api.new_key(tenant, ["submit", "read"])
    limit = api.call(
        "PATCH", f"/v1/tenants/{tenant}", api.admin_key, json={"max_concurrent_jobs": 1}
    )
    assert limit.status_code == 200, limit.text
    first = submit(api, key, demo_job(2), "only-one")
    assert first.status_code == 201, first.text
    assert submit(api, key, demo_job(2), "a-second").status_code == 429  # the quota holds
    again = submit(api, key, demo_job(2), "only-one")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


class LosesFirstAnswer(httpx.BaseTransport):
    """Sends every request to the API, and loses the answer to the first POST: the job is
    stored, the client sees a broken connection."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.method == "POST":
            self.statuses.append(response.status_code)
            if len(self.statuses) == 1:
                response.read()
                response.close()
                raise httpx.RemoteProtocolError("connection lost before the answer")
        return response

    def close(self) -> None:
        self._inner.close()


def test_the_sdk_sends_a_submission_whose_answer_was_lost_again_and_gets_one_job(
    api: RunningApi, key: str
) -> None:
    transport = LosesFirstAnswer()
    http = httpx.Client(transport=transport, timeout=30)
    with Client(api.url, key, api.grpc_target, http_client=http) as client:
        job = client.submit(demo_job(2))
    assert transport.statuses == [201, 200]  # stored once; the retry found it
    assert jobs_of(api, key) == [job.id]


def concurrently(count: int, work: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``work()`` in ``count`` threads that start together; their answers."""
    start = threading.Barrier(count)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        answer = work()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == count
    return answers


def test_submissions_with_one_key_at_once_store_one_job(api: RunningApi, key: str) -> None:
    answers = concurrently(8, lambda: submit(api, key, demo_job(2), "at-once"))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    [job_id] = {a.json()["id"] for a in answers}
    assert jobs_of(api, key) == [job_id]


class Race:
    """What the ``racing`` fixture saw: the API's batches of submissions (``GroupCommit``)."""

    commits: use_cases.GroupCommit[Any] | None = None


@pytest.fixture
def racing(monkeypatch: pytest.MonkeyPatch) -> Race:
    """Every submission's first look-up of its key finds nothing, as when another submission
    with the key has not committed yet: storing it meets the unique index."""
    state, race = threading.local(), Race()
    submit_job, submitted_before = use_cases.submit_job, use_cases._submitted_before

    def submit_first(*args: Any, **kwargs: Any) -> use_cases.Submitted:
        race.commits = args[8]  # the API's GroupCommit
        state.looked = False
        return submit_job(*args, **kwargs)

    def look_up(*args: Any) -> use_cases.Submitted | None:
        if not state.looked:
            state.looked = True
            return None
        return submitted_before(*args)

    monkeypatch.setattr(use_cases, "submit_job", submit_first)
    monkeypatch.setattr(use_cases, "_submitted_before", look_up)
    return race


def test_the_submission_that_loses_the_race_answers_with_the_winners_job(
    api: RunningApi, key: str, racing: Race, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = submit(api, key, demo_job(2), "raced")
    assert first.status_code == 201, first.text
    late = submit(api, key, demo_job(2), "raced")  # not found first: refused by the index
    assert late.status_code == 200, late.text
    assert late.json()["id"] == first.json()["id"]
    assert submit(api, key, demo_job(3), "raced").status_code == 422  # another body still is

    # Six at once, the first stored alone while the other five wait, then stored as one batch:
    # that batch meets the index, so each of the five is stored in a transaction of its own,
    # and each, refused by the index, answers with the first one's job.
    batches: list[int] = []
    store = use_cases._store

    def store_held(session: Any, settings: Any, batch: list[Any]) -> None:
        batches.append(len(batch))
        tenant, commits = batch[0].candidate.principal.tenant, racing.commits
        if len(batches) == 1 and commits is not None:
            wait_until(lambda: commits.waiting(tenant) == 5, 60, what="five waiting")
        store(session, settings, batch)

    monkeypatch.setattr(use_cases, "_store", store_held)
    answers = concurrently(6, lambda: submit(api, key, demo_job(2), "raced-together"))
    assert batches == [1, 5]
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(jobs_of(api, key)) == 2
