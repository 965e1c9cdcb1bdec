"""A job's ``pool`` is one pool or a list of them in order of preference (issue 16), for every
kind a user submits: held as the list, written back as it was given, refused at the place in
the list that is at fault."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from qorch.samples import demo_job
from qorchestra.examples import example
from qorchestra.jobs.kinds import AnyJob

JOBS = TypeAdapter(AnyJob)


@pytest.mark.parametrize("spec", [demo_job(2), example("moons-classifier"), example("h2-vqe")])
def test_every_kind_takes_one_pool_or_a_list(spec: dict[str, Any]) -> None:
    one = JOBS.validate_python({**spec, "pool": "local-dm"})
    assert (one.pool, one.pools, one.model_dump(mode="json")["pool"]) == (
        "local-dm",
        ["local-dm"],
        "local-dm",
    )
    several = JOBS.validate_python({**spec, "pool": ["aws-garnet", "local-sv"]})
    assert (several.pool, several.pools) == ("aws-garnet", ["aws-garnet", "local-sv"])
    stored = several.model_dump(mode="json")
    assert stored["pool"] == ["aws-garnet", "local-sv"] and "pools" not in stored
    assert JOBS.validate_python(stored).pools == several.pools  # as the orchestrator reads it


@pytest.mark.parametrize(
    ("pool", "loc", "message"),
    [
        ([], ("pool",), "at least 1 item"),
        (["local-sv", "local-sv"], ("pool",), "named twice"),
        (["local-sv", "Nope"], ("pool", 1), "pool must be"),
        ("Nope", ("pool",), "pool must be"),
        ([f"aws-d{i}" for i in range(9)], ("pool",), "at most 8 items"),
    ],
    ids=["empty", "twice", "bad name in list", "bad name", "too many"],
)
def test_a_bad_pool_is_refused_where_it_stands(
    pool: Any, loc: tuple[str | int, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        JOBS.validate_python({**demo_job(2), "pool": pool})
    [error] = refused.value.errors()
    assert error["loc"][-len(loc) :] == loc and message in error["msg"], error


def test_pools_is_not_a_second_way_to_say_it() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        JOBS.validate_python({**demo_job(2), "pools": ["local-sv"]})
