"""Batched admission's pure logic (``api/use_cases.py``, ``GroupCommit``): one tenant's
submissions that come while ``max_running`` of its batches are stored wait, and are stored
together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from api.use_cases import GroupCommit


def _until(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.005)


class _Store:
    """Records each batch; holds the batches of ``held`` until ``release`` is set."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.held = held or set()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, items: list[str]) -> None:
        with self.lock:
            self.batches.append(items)
        if self.held & set(items):
            assert self.release.wait(5)
        if "bad" in items:
            raise RuntimeError("the batch failed")


def _run_in_threads(
    commits: GroupCommit[str], store: _Store, key: str, items: list[str]
) -> tuple[list[threading.Thread], dict[str, Any]]:
    outcomes: dict[str, Any] = {}

    def run(item: str) -> None:
        try:
            commits.run(key, item, store)
            outcomes[item] = "stored"
        except RuntimeError as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_a_lone_submission_is_stored_at_once_in_a_batch_of_its_own() -> None:
    commits: GroupCommit[str] = GroupCommit()
    store = _Store()
    commits.run("t", "a", store)
    commits.run("t", "b", store)

    assert store.batches == [["a"], ["b"]]
    assert commits.waiting("t") == 0


def test_submissions_that_come_meanwhile_are_stored_together_next() -> None:
    commits: GroupCommit[str] = GroupCommit(max_running=1)
    store = _Store(held={"first"})
    (first,), _ = _run_in_threads(commits, store, "t", ["first"])
    _until(lambda: store.batches == [["first"]])
    others, outcomes = _run_in_threads(commits, store, "t", ["b", "c", "d"])
    _until(lambda: commits.waiting("t") == 3)

    store.release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert store.batches[0] == ["first"]
    assert sorted(store.batches[1]) == ["b", "c", "d"]
    assert len(store.batches) == 2
    assert outcomes == {"b": "stored", "c": "stored", "d": "stored"}
    assert commits.waiting("t") == 0


def test_a_batch_holds_at_most_max_batch() -> None:
    commits: GroupCommit[str] = GroupCommit(max_batch=2, max_running=1)
    store = _Store(held={"first"})
    (first,), _ = _run_in_threads(commits, store, "t", ["first"])
    _until(lambda: len(store.batches) == 1)
    others, _ = _run_in_threads(commits, store, "t", ["b", "c", "d", "e", "f"])
    _until(lambda: commits.waiting("t") == 5)

    store.release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert [len(batch) for batch in store.batches] == [1, 2, 2, 1]
    assert sorted(item for batch in store.batches for item in batch) == [
        "b",
        "c",
        "d",
        "e",
        "f",
        "first",
    ]


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_goes_on() -> None:
    commits: GroupCommit[str] = GroupCommit(max_running=1)
    store = _Store(held={"first"})
    (first,), _ = _run_in_threads(commits, store, "t", ["first"])
    _until(lambda: len(store.batches) == 1)
    failing, outcomes = _run_in_threads(commits, store, "t", ["bad", "x"])
    _until(lambda: commits.waiting("t") == 2)

    store.release.set()
    for thread in [first, *failing]:
        thread.join(5)

    assert all(isinstance(outcomes[item], RuntimeError) for item in ("bad", "x"))
    commits.run("t", "after", store)
    assert store.batches[-1] == ["after"]


def test_up_to_max_running_batches_of_a_tenant_are_stored_at_once() -> None:
    commits: GroupCommit[str] = GroupCommit(max_running=2)
    store = _Store(held={"a", "b"})
    held, _ = _run_in_threads(commits, store, "t", ["a", "b"])
    _until(lambda: len(store.batches) == 2)  # both at once, neither waits for the other
    others, outcomes = _run_in_threads(commits, store, "t", ["c", "d", "e"])
    _until(lambda: commits.waiting("t") == 3)

    store.release.set()
    for thread in [*held, *others]:
        thread.join(5)

    assert sorted(item for batch in store.batches[2:] for item in batch) == ["c", "d", "e"]
    assert outcomes == {"c": "stored", "d": "stored", "e": "stored"}
    assert commits.waiting("t") == 0
    commits.run("t", "after", store)  # every batch ended: the next is stored at once
    assert store.batches[-1] == ["after"]


def test_tenants_do_not_wait_for_each_other() -> None:
    commits: GroupCommit[str] = GroupCommit(max_running=1)
    store = _Store(held={"a1"})
    (held,), _ = _run_in_threads(commits, store, "a", ["a1"])
    _until(lambda: len(store.batches) == 1)

    commits.run("b", "b1", store)  # does not wait for a's batch

    assert store.batches[-1] == ["b1"]
    store.release.set()
    held.join(5)


@pytest.mark.parametrize("callers", [2, 16])
def test_every_caller_returns_once_its_item_is_stored(callers: int) -> None:
    commits: GroupCommit[str] = GroupCommit(max_batch=3)
    store = _Store()
    threads, outcomes = _run_in_threads(commits, store, "t", [f"j{i}" for i in range(callers)])
    for thread in threads:
        thread.join(5)

    assert not any(thread.is_alive() for thread in threads)
    assert sorted(item for batch in store.batches for item in batch) == sorted(outcomes)
    assert set(outcomes.values()) == {"stored"}
