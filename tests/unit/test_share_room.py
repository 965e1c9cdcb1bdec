"""Sharing a pool's free slots between running jobs (qorchestra.planning.share_room): fair
between tenants, oldest first within one, never past a job's own room."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qorchestra.planning import Wanting, share_room


def test_a_tenant_alone_takes_every_slot_oldest_job_first() -> None:
    wanting = [Wanting("a", 0, 3), Wanting("a", 0, 5)]
    assert share_room(6, wanting) == [3, 3]
    assert share_room(2, wanting) == [2, 0]


def test_a_newcomer_gets_the_freed_slots_before_a_tenant_that_holds_the_pool() -> None:
    # tenant a holds 10 slots with its old jobs; b just arrived: b fills up to a's level first
    wanting = [Wanting("a", 10, 8), Wanting("a", 10, 8), Wanting("b", 0, 8)]
    assert share_room(6, wanting) == [0, 0, 6]


def test_equal_tenants_take_turns_whatever_their_number_of_jobs() -> None:
    wanting = [Wanting("a", 0, 4) for _ in range(50)] + [Wanting("b", 0, 4)]
    grants = share_room(8, wanting)
    assert sum(grants[:50]) == 4 and grants[50] == 4
    assert grants[0] == 4  # a's share goes to its oldest job


def test_a_job_never_gets_more_than_its_room_and_nothing_is_given_without_room() -> None:
    wanting = [Wanting("a", 0, 1), Wanting("b", 0, 0), Wanting("c", 0, 2)]
    assert share_room(10, wanting) == [1, 0, 2]
    assert share_room(0, wanting) == [0, 0, 0]
    assert share_room(5, []) == []


tenants = st.sampled_from("abcd")
jobs = st.lists(st.builds(Wanting, tenants, st.integers(0, 20), st.integers(0, 10)), max_size=12)


@given(st.integers(0, 60), jobs)
def test_max_min_fair(pool_room: int, wanting: list[Wanting]) -> None:
    # a tenant's in-flight count is the same on all its jobs (it is the tenant's)
    load = {w.tenant: w.tenant_in_flight for w in wanting}
    wanting = [Wanting(w.tenant, load[w.tenant], w.job_room) for w in wanting]
    grants = share_room(pool_room, wanting)
    assert all(0 <= g <= w.job_room for g, w in zip(grants, wanting, strict=True))
    assert sum(grants) == min(pool_room, sum(w.job_room for w in wanting))
    final = dict(load)
    left = dict.fromkeys(load, 0)
    for g, w in zip(grants, wanting, strict=True):
        final[w.tenant] += g
        left[w.tenant] += w.job_room - g
    for t, got in final.items():
        given_any = any(g for g, w in zip(grants, wanting, strict=True) if w.tenant == t)
        for u in final:
            # nobody got a slot while another tenant with room left was further behind
            if given_any and left[u] > 0:
                assert got <= final[u] + 1
