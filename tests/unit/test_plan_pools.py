"""A job that names several pools is checked on each (issue 16): what is stored (its cutting)
is settled on the pool of the fewest qubits, so it fits every pool; each pool has its own cost
estimate, and the paid ones over the cap are left out. Pure: no database, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from api.admission import plan_pools
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.kinds import AnyJob
from tests.support.circuits import ladder

OBSERVABLES = ["Z" * 8, "ZZ" + "I" * 6]
SETTINGS = Settings(pool_max_qubits={"local-sv": 10, "local-dm": 6})


def wide(pool: Any, **fields: Any) -> CircuitsJob:
    return CircuitsJob.model_validate(
        {
            "pool": pool,
            "result": {"type": "expectation", "observables": OBSERVABLES},
            "programs": [{"source": ladder(8), "bindings": [{"t": 0.3}]}],
            **fields,
        }
    )


def no_datasets(_: str) -> None:
    return None


def test_the_cut_is_settled_on_the_narrowest_pool_and_fits_every_pool() -> None:
    job: AnyJob = wide(["local-sv", "local-dm"])
    plan = plan_pools(job, SETTINGS, no_datasets)
    assert job.cutting is not None and job.cutting.max_subcircuit_qubits == 6
    assert plan.prepared.cut_plans is not None
    assert plan.pools == ("local-sv", "local-dm") and plan.cost == 0.0
    alone: AnyJob = wide("local-sv")
    plan_pools(alone, SETTINGS, no_datasets)
    assert alone.cutting is None  # 8 qubits fit local-sv alone: nothing to cut


def test_a_pool_the_job_cannot_run_on_is_named() -> None:
    job: AnyJob = wide(["local-sv", "local-dm"], result={"type": "probabilities"})
    with pytest.raises(SpecError) as refused:
        plan_pools(job, SETTINGS, no_datasets)
    [error] = refused.value.errors
    assert error.loc == ("programs", 0, "source")
    assert error.msg == "on pool local-dm: uses 8 qubits; pool local-dm allows 6"


def test_each_pool_is_estimated_and_those_over_the_cap_are_left_out() -> None:
    settings = Settings(aws_prices={"aws-sv1": {"per_task": 0.5, "per_shot": 0.0}})
    job: AnyJob = wide(["aws-sv1", "aws-dm1", "local-sv"], max_cost_usd=0.2)
    plan = plan_pools(job, settings, no_datasets)
    # aws-dm1: $0.075 a task (the default table), aws-sv1: $0.50 here; one task each
    assert plan.pools == ("aws-dm1", "local-sv") and plan.cost == 0.08
    assert plan.warnings == ["pool aws-sv1 left out: its estimate $0.50 exceeds max_cost_usd $0.20"]
