"""The parse sandbox's pure logic: the parse cache, the fair queue of workers, the in-process
memory of parsed programs, and how ``screen`` answers a spent budget or busy parsers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from api.admission import ParsersBusy, TooManyRequests, screen
from api.auth import Principal
from api.sandbox import BudgetSpent, Closed, FairQueue, ParseCache, WorkersBusy
from qorchestra import qasm
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.jobs.errors import SpecError
from qorchestra.qasm import ProgramError, ProgramInfo
from qorchestra.store.pools import PoolPresence

INFO = ProgramInfo(("a",), 2, False)


# -- the cache ---------------------------------------------------------------------------------


def test_the_cache_keeps_outcomes_by_tenant_and_source() -> None:
    cache = ParseCache(size=4)
    cache.put(ParseCache.key("a", "p1"), INFO)
    cache.put(ParseCache.key("a", "p2"), "syntax error")

    assert cache.get(ParseCache.key("a", "p1")) == INFO
    assert cache.get(ParseCache.key("a", "p2")) == "syntax error"
    # another tenant's parse is not shared: no timing hint, no planted refusal
    assert cache.get(ParseCache.key("b", "p1")) is None
    assert (cache.hits, cache.misses) == (2, 1)


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = ParseCache(size=2)
    cache.put(ParseCache.key("t", "p1"), INFO)
    cache.put(ParseCache.key("t", "p2"), INFO)
    assert cache.get(ParseCache.key("t", "p1")) == INFO  # p1 used: p2 is now the oldest
    cache.put(ParseCache.key("t", "p3"), INFO)

    assert len(cache) == 2
    assert cache.get(ParseCache.key("t", "p2")) is None
    assert cache.get(ParseCache.key("t", "p1")) == INFO
    assert cache.get(ParseCache.key("t", "p3")) == INFO


def test_a_remembered_program_is_not_parsed_again_in_process() -> None:
    source = "not a program at all, remembered " + str(time.monotonic())
    with pytest.raises(ProgramError):
        qasm.analyze(source)
    qasm.remember(source, INFO)

    assert qasm.analyze(source) == INFO


# -- the fair queue ----------------------------------------------------------------------------


def _waiter(q: FairQueue[str], tenant: str, got: list[tuple[str, str]], limit: int = 9) -> Any:
    def run() -> None:
        got.append((tenant, q.get(tenant, 5.0, limit)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(condition: Any) -> None:
    end = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.005)


def test_an_idle_item_is_handed_out_at_once() -> None:
    q: FairQueue[str] = FairQueue()
    q.put("w1")

    assert q.get("a", 0.1) == "w1"
    assert q.held("a") == 1
    q.release("a", "w1")
    assert q.held("a") == 0 and q.queue == ["w1"]


def test_waiting_tenants_are_served_round_robin() -> None:
    q: FairQueue[str] = FairQueue()
    got: list[tuple[str, str]] = []
    threads = []
    for tenant in ["a", "a", "a", "b", "c"]:  # a's backlog arrives first
        threads.append(_waiter(q, tenant, got))
        count = len(threads)
        _until(lambda count=count: q.waiting() == count)

    for i in range(5):
        q.put(f"w{i}")
        _until(lambda n=i + 1: len(got) == n)

    assert [tenant for tenant, _ in got] == ["a", "b", "c", "a", "a"]
    for thread in threads:
        thread.join(1)


def test_a_tenant_holds_at_most_its_share() -> None:
    q: FairQueue[str] = FairQueue()
    q.put("w1")
    q.put("w2")
    assert q.get("a", 0.1, limit=1) == "w1"
    with pytest.raises(TimeoutError):  # w2 is idle, but a holds its share
        q.get("a", 0.05, limit=1)
    assert q.waiting() == 0  # a timed-out caller leaves the queue

    assert q.get("b", 0.1, limit=1) == "w2"  # and another tenant is not kept waiting


def test_closing_wakes_the_waiters() -> None:
    q: FairQueue[str] = FairQueue()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            q.get("a", 5.0)
        except Closed as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _until(lambda: q.waiting() == 1)
    q.close()
    thread.join(2)

    assert len(errors) == 1
    with pytest.raises(Closed):
        q.get("a", 0.1)


# -- screen ------------------------------------------------------------------------------------

GOOD = "OPENQASM 3.0;\nqubit[1] q;\nx q[0];\n"


class _Sandbox:
    """Answers by program: 'slow' spends the budget, 'busy' finds no worker."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def analyze(self, source: str, **terms: Any) -> ProgramInfo:
        self.calls.append({"source": source, **terms})
        if "slow" in source:
            raise BudgetSpent("not parsed within the request's parse budget")
        if "busy" in source:
            raise WorkersBusy("every program parser is busy", 3.0)
        return ProgramInfo((), 1, False)


class _Pools:
    """Every pool known and served (the pool check is tested against the store:
    tests/integration/test_submit_pools.py)."""

    def presence(self, _session: object, _settings: Settings, _pool: str) -> PoolPresence:
        return PoolPresence(known=True, live=True)


def _screen(sources: list[str], sandbox: _Sandbox) -> None:
    job = CircuitsJob.model_validate(
        {
            "pool": "local-sv",
            "shots": 0,
            "result": {"type": "expectation", "observables": ["Z"]},
            "programs": [{"source": s} for s in sources],
        }
    )
    admin = Principal("k", "p", "tenant-a", frozenset({"admin"}))  # admins skip the rate limit
    screen(job, admin, Settings(parse_budget_s=7.0), sandbox, None, None, _Pools())  # type: ignore[arg-type]


def test_screen_passes_the_tenant_and_one_deadline_for_the_whole_request() -> None:
    sandbox = _Sandbox()
    before = time.monotonic()
    _screen([GOOD, GOOD + "x q[0];\n"], sandbox)

    assert [c["tenant"] for c in sandbox.calls] == ["tenant-a", "tenant-a"]
    deadlines = {c["deadline"] for c in sandbox.calls}
    assert len(deadlines) == 1
    assert before + 7.0 <= deadlines.pop() <= time.monotonic() + 7.0


def test_a_spent_budget_names_the_program_and_parses_no_more() -> None:
    sandbox = _Sandbox()
    with pytest.raises(SpecError) as info:
        _screen([GOOD, GOOD + "// slow\n", GOOD + "// after\n"], sandbox)

    assert [(e.loc, "budget" in e.msg) for e in info.value.errors] == [
        (("programs", 1, "source"), True)
    ]
    assert len(sandbox.calls) == 2


def test_busy_parsers_are_answered_with_retry_after() -> None:
    with pytest.raises(ParsersBusy) as info:
        _screen([GOOD + "// busy\n"], _Sandbox())

    assert isinstance(info.value, TooManyRequests)
    assert info.value.retry_after == 3.0
