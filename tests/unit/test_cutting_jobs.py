"""A circuits job wider than its pool, through validation, planning, the node's executor and
aggregation (the same pure functions the orchestrator runs; no Kafka, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.executors.local import LocalExecutor
from orchestrator.aggregation import StoredFragment, assemble_result, binding_values
from orchestrator.planning import build_fragment, plan_fragments
from orchestrator.spec import JobCreate, SpecError, validate_job
from proto.qorch.v1 import fragments_pb2 as pb
from qorch.config import Settings
from tests.unit.test_cutting import expectations, ladder

OBSERVABLES = ["Z" * 12, "ZZ" + "I" * 10, "I" * 5 + "XX" + "I" * 5, "I" * 11 + "Y"]
BINDINGS = [{"t": 0.3}, {"t": -1.1}, {"t": 2.0}]


def job() -> JobCreate:
    return JobCreate.model_validate(
        {
            "name": "wide",
            "pool": "local-sv",
            "shots": 0,
            "result": {"type": "expectation", "observables": OBSERVABLES},
            "programs": [{"source": ladder(12), "bindings": BINDINGS}],
        }
    )


def test_a_program_wider_than_its_pool_is_cut_and_knitted_back() -> None:
    spec = job()
    validate_job(spec, Settings(pool_max_qubits={"local-sv": 6}))
    assert spec.cutting is not None and spec.cutting.max_subcircuit_qubits == 6

    executor = LocalExecutor("braket_sv")
    stored = []
    plans = list(plan_fragments(spec, 16))
    assert len(plans) == 35  # 5 + 25 + 5 subexperiments of two cut CNOTs, 3 bindings each
    for i, plan in enumerate(plans):
        fragment = build_fragment(spec, plan, job_id="j", fragment_id=str(i), attempt=1)
        assert fragment.qubits <= 6
        success = pb.FragmentSuccess(results=executor.execute(fragment))
        values = binding_values(
            success, plan.binding_count, "expectations", len(fragment.observables)
        )
        stored.append(StoredFragment(plan.program_index, plan.binding_offset, values))
    result = assemble_result(spec, stored)

    direct = expectations(executor, ladder(12), 12, OBSERVABLES, BINDINGS)
    assert np.allclose(result["programs"][0]["values"], direct, atol=1e-8)
    plan = result["cutting"]["0"]
    assert (plan["gate_cuts"], plan["wire_cuts"], plan["subexperiments"]) == (2, 0, 35)
    assert plan["sampling_overhead"] == pytest.approx(81.0)


def test_a_plan_beyond_the_overhead_limit_is_refused_with_its_numbers() -> None:
    with pytest.raises(SpecError) as caught:
        validate_job(job(), Settings(pool_max_qubits={"local-sv": 6}, max_cut_overhead=50))
    (error,) = caught.value.errors
    assert error.loc == ("programs", 0, "source")
    assert "2 cuts" in error.msg and "sampling overhead 81" in error.msg
