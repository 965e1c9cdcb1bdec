"""A busy pool's freed slots go fairly between tenants, not to the oldest job: a tenant whose
big job holds the pool does not keep a newcomer's job waiting until it is fully written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.dispatch import top_up
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory
from tests.support.settings import make_settings
from tests.support.stored_jobs import apply, fragments_of, plan_until, submit, success_for

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(fresh_database: str) -> Iterator[SessionFactory]:
    engine = make_engine(fresh_database, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(fresh_database: str) -> Settings:
    """A pool of four slots, one binding a fragment."""
    return make_settings(
        database_url=fresh_database,
        max_inflight_per_pool=4,
        max_inflight_per_job=4,
        fragment_bindings=1,
    )


def written(factory: SessionFactory, job_id: str) -> int:
    with factory() as session:
        return repo.get_job(session, job_id).fragments_written


def test_freed_slots_go_to_the_tenant_with_fewest_in_flight(
    factory: SessionFactory, settings: Settings
) -> None:
    big = submit(factory, bindings=12, tenant="a")
    plan_until(factory, settings, big)
    assert written(factory, big) == 4  # the whole pool
    newcomer = submit(factory, bindings=12, tenant="b")
    plan_until(factory, settings, newcomer)
    assert written(factory, newcomer) == 0  # running, but the pool is full

    for fragment in fragments_of(factory, big)[:2]:
        assert apply(factory, settings, success_for(fragment, big)) == "counted"
    assert top_up(factory, settings) == 2
    # oldest first would have given both slots to the big job
    assert (written(factory, big), written(factory, newcomer)) == (4, 2)

    for fragment in fragments_of(factory, big)[2:4]:
        assert apply(factory, settings, success_for(fragment, big)) == "counted"
    top_up(factory, settings)
    # a: 0 in flight, b: 2; a fills up to b's level
    assert (written(factory, big), written(factory, newcomer)) == (6, 2)


def test_top_ups_take_tenants_in_turn_before_a_tenants_second_job(
    factory: SessionFactory, settings: Settings
) -> None:
    crowd = [submit(factory, bindings=12, tenant="crowd") for _ in range(3)]
    for job_id in crowd:
        plan_until(factory, settings, job_id)
    loner = submit(factory, bindings=12, tenant="loner")
    plan_until(factory, settings, loner)
    with factory() as session, session.begin():
        first_two = [job.id for job in repo.jobs_to_top_up(session, 2)]
    # every job has fragments left to write; the loner's comes second, though it is the newest
    assert first_two == [crowd[0], loner]
