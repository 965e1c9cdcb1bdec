"""A circuits job wider than its pool, through validation, planning, the node's executor and
aggregation (the same pure functions the orchestrator runs; no Kafka, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import StoredFragment, assemble_result, binding_values
from qorchestra.config import Settings
from qorchestra.cutting.layout import CuttingSpec, job_layout, with_progress
from qorchestra.cutting.plan import search_budget
from qorchestra.jobs.circuits import CircuitsJob, validate_job
from qorchestra.jobs.errors import SpecError
from qorchestra.planning import build_fragment, plan_fragments
from tests.support.circuits import expectations, ladder

OBSERVABLES = ["Z" * 12, "ZZ" + "I" * 10, "I" * 5 + "XX" + "I" * 5, "I" * 11 + "Y"]
BINDINGS = [{"t": 0.3}, {"t": -1.1}, {"t": 2.0}]


def job() -> CircuitsJob:
    return CircuitsJob.model_validate(
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
    validate_job(spec, Settings(pool_max_qubits={"local-sv": 4}))
    assert spec.cutting is not None and spec.cutting.max_subcircuit_qubits == 4

    executor = LocalExecutor("braket_sv")
    stored = []
    plans = list(plan_fragments(spec, 16))
    assert len(plans) == 35  # 5 + 25 + 5 subexperiments of two cut CNOTs, 3 bindings each
    for i, plan in enumerate(plans):
        fragment = build_fragment(spec, plan, job_id="j", fragment_id=str(i), attempt=1)
        assert fragment.qubits <= 4
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
        validate_job(job(), Settings(pool_max_qubits={"local-sv": 4}, max_cut_overhead=50))
    (error,) = caught.value.errors
    assert error.loc == ("programs", 0, "source")
    assert "2 cuts" in error.msg and "sampling overhead 81" in error.msg


def test_a_plan_with_too_many_subexperiments_is_refused_with_its_numbers() -> None:
    settings = Settings(pool_max_qubits={"local-sv": 4}, max_cut_subexperiments=30)
    with pytest.raises(SpecError) as caught:
        validate_job(job(), settings)
    (error,) = caught.value.errors
    assert error.loc == ("programs", 0, "source")
    assert "2 cuts (2 gates, 0 wires), 35 subexperiments" in error.msg
    assert "at most 30 subexperiments per program (QORCH_MAX_CUT_SUBEXPERIMENTS)" in error.msg
    # at the limit it is accepted
    validate_job(job(), Settings(pool_max_qubits={"local-sv": 4}, max_cut_subexperiments=35))


def test_the_search_budget_is_stored_with_the_spec_and_capped_by_the_setting() -> None:
    settings = Settings(pool_max_qubits={"local-sv": 6}, cut_search_timeout_s=0.5)
    spec = job()
    validate_job(spec, settings)
    assert spec.cutting is not None and spec.cutting.search_budget == search_budget(0.5)
    asked = job()
    asked.cutting = CuttingSpec(max_subcircuit_qubits=6, search_budget=10**12)
    validate_job(asked, settings)
    assert asked.cutting is not None and asked.cutting.search_budget == search_budget(0.5)
    small = job()
    small.cutting = CuttingSpec(max_subcircuit_qubits=6, search_budget=1000)
    validate_job(small, settings)
    assert small.cutting is not None and small.cutting.search_budget == 1000
    # the stored spec alone decides the plan: it round-trips with its budget
    stored = CircuitsJob.model_validate(spec.model_dump(mode="json"))
    assert job_layout(stored).plans() == job_layout(spec).plans()


def test_subcircuit_progress_maps_fragment_rows_to_subcircuits() -> None:
    plan = {
        "subcircuits": [{"qubits": [0, 1], "width": 2, "ancillas": 0}] * 2,
        "programs_per_subcircuit": [5, 5],
    }
    # program 0 uncut (run 0), program 1 cut (runs 1-10), program 2 uncut, program 3 cut
    plans = {"1": plan, "3": plan}
    runs = {0: (4, 4), 1: (4, 4), 5: (4, 2), 6: (4, 0), 12: (8, 8), 21: (8, 8)}
    shown = with_progress(plans, runs, {1: 4, 3: 8})
    assert [(s["runs_done"], s["runs_total"]) for s in shown["1"]["subcircuits"]] == [
        (6, 20),
        (0, 20),
    ]
    assert [(s["runs_done"], s["runs_total"]) for s in shown["3"]["subcircuits"]] == [
        (8, 40),
        (8, 40),
    ]
    # a training job numbers its model's subexperiments from 0; totals are what was written
    training = with_progress({"model": plan}, {0: (6, 6), 7: (6, 3)}, None)
    assert [(s["runs_done"], s["runs_total"]) for s in training["model"]["subcircuits"]] == [
        (6, 6),
        (3, 6),
    ]
