"""Which pushed events a watcher may yield without reading the store."""

from __future__ import annotations

from api.event_hub import in_order
from proto.qorch.v1 import jobs_pb2
from qorchestra.store.results import missing_values


def events(*seqs: int) -> list[jobs_pb2.JobEvent]:
    return [jobs_pb2.JobEvent(job_id="j", seq=s) for s in seqs]


def seqs(found: list[jobs_pb2.JobEvent]) -> list[int]:
    return [e.seq for e in found]


def test_the_next_events_are_yielded_in_order() -> None:
    ready, gap = in_order(3, events(5, 4, 6))
    assert seqs(ready) == [4, 5, 6] and not gap


def test_duplicates_and_old_events_are_dropped() -> None:
    ready, gap = in_order(3, events(2, 3, 4, 4))
    assert seqs(ready) == [4] and not gap


def test_a_gap_sends_the_watcher_to_the_store() -> None:
    ready, gap = in_order(3, events(4, 6))
    assert seqs(ready) == [4] and gap
    ready, gap = in_order(3, events(5))
    assert ready == [] and gap


def test_nothing_pushed_is_no_gap() -> None:
    assert in_order(3, []) == ([], False)


def test_missing_values_name_the_program() -> None:
    assert missing_values({0: 7, 1: 1}, {0: 7, 1: 1}) == []
    assert missing_values({0: 7, 1: 1}, {0: 6}) == [
        "program 0 has 6 values for 7 bindings",
        "program 1 has 0 values for 1 bindings",
    ]
    assert missing_values({0: 1}, {0: 1, 2: 3}) == ["values for program 2, which the job lacks"]
