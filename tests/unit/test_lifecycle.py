"""The job state machine, over the whole grid of transitions."""

from __future__ import annotations

import itertools

import pytest

from qorchestra.lifecycle import InvalidTransition, JobStatus, check_transition, is_terminal

S = JobStatus
ALLOWED = {
    (S.QUEUED, S.RUNNING), (S.QUEUED, S.FAILED), (S.QUEUED, S.CANCELLING), (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLING),
    (S.RUNNING, S.CANCELLED), (S.CANCELLING, S.CANCELLED), (S.CANCELLING, S.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(S, S)),
    ids=lambda s: s.value,
)
def test_transition_grid(current: JobStatus, target: JobStatus) -> None:
    if (current, target) in ALLOWED:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(current, target)


def test_terminal_states_have_no_way_out() -> None:
    for status in S:
        assert is_terminal(status) == (status in {S.SUCCEEDED, S.FAILED, S.CANCELLED})
