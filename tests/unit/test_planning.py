"""Planning a job into fragments."""

from __future__ import annotations

from itertools import pairwise

import pytest

from orchestrator.windows import chunks
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.planning import FragmentPlan, build_fragment, plan_fragments

PROGRAM = "OPENQASM 3.0; input float a; qubit[1] q; rx(a) q[0];"


def job(*binding_counts: int, result: str = "probabilities") -> CircuitsJob:
    return CircuitsJob.model_validate(
        {
            "result": {"type": result},
            "programs": [
                {"source": PROGRAM, "bindings": [{"a": float(i)} for i in range(n)]}
                for n in binding_counts
            ],
        }
    )


@pytest.mark.parametrize("batch", [1, 3, 16, 100])
def test_fragments_cover_every_binding_once_in_order(batch: int) -> None:
    spec = job(10, 1, 33)
    plans = list(plan_fragments(spec, batch))
    for index, total in enumerate([10, 1, 33]):
        mine = [p for p in plans if p.program_index == index]
        covered = [p.binding_offset + i for p in mine for i in range(p.binding_count)]
        assert covered == list(range(total))
        assert all(1 <= p.binding_count <= batch for p in mine)


def test_program_without_bindings_runs_once() -> None:
    spec = CircuitsJob.model_validate(
        {"result": {"type": "probabilities"}, "programs": [{"source": "OPENQASM 3.0; qubit q;"}]}
    )
    plans = list(plan_fragments(spec, 8))
    assert plans == [FragmentPlan(0, 0, 1)]
    fragment = build_fragment(spec, plans[0], job_id="j", fragment_id="f", attempt=1)
    assert len(fragment.bindings) == 1 and not fragment.bindings[0].values


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(plan_fragments(job(3), 0))


def test_built_fragment_carries_its_slice_and_settings() -> None:
    spec = job(10, result="expectation")
    spec.result.observables = ["Z"]
    fragment = build_fragment(
        spec, FragmentPlan(0, 4, 3), job_id="job-1", fragment_id="frag-1", attempt=2
    )
    decoded = pb.Fragment.FromString(fragment.SerializeToString())
    assert decoded.job_id == "job-1" and decoded.fragment_id == "frag-1"
    assert decoded.attempt == 2 and decoded.binding_offset == 4
    assert [b.values["a"] for b in decoded.bindings] == [4.0, 5.0, 6.0]
    assert decoded.result_kind == pb.RESULT_KIND_EXPECTATION
    assert list(decoded.observables) == ["Z"]
    assert decoded.program == PROGRAM


@pytest.mark.parametrize("limit", [1, 4, 5, 9, 100])
def test_window_chunks_keep_order_and_stay_under_the_binding_limit(limit: int) -> None:
    plans = [FragmentPlan(i, 0, n) for i, n in enumerate([4, 4, 1, 4, 3, 4])]
    parts = chunks(plans, limit)
    assert [p for part in parts for p in part] == plans
    for part in parts:
        assert part  # no empty chunk
        assert len(part) == 1 or sum(p.binding_count for p in part) <= limit
    # Greedy: a chunk ends only where the next plan would not fit.
    for part, following in pairwise(parts):
        assert sum(p.binding_count for p in part) + following[0].binding_count > limit


def test_no_plans_no_chunks() -> None:
    assert chunks([], 10) == []
