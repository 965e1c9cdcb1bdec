"""Turning fragment results into a job's result."""

from __future__ import annotations

import random

import pytest

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import (
    Expected,
    ResultShapeError,
    ResultValueError,
    StoredFragment,
    assemble_result,
    binding_values,
)
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.planning import plan_fragments

PROGRAM = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[0];"


def spec(bindings: int) -> CircuitsJob:
    return CircuitsJob.model_validate(
        {
            "result": {"type": "expectation", "observables": ["ZI", "IZ"]},
            "programs": [
                {"source": PROGRAM, "bindings": [{"a": float(i)} for i in range(bindings)]}
            ],
        }
    )


def success(values: list[list[float]]) -> pb.FragmentSuccess:
    return pb.FragmentSuccess(
        results=[pb.BindingResult(expectations=pb.Expectations(values=v)) for v in values]
    )


def test_values_are_checked_against_the_fragment() -> None:
    asked = Expected(2, "expectation", observables=2)
    ok = binding_values(success([[1.0, 0.5], [0.0, 1.0]]), asked)
    assert ok == [[1.0, 0.5], [0.0, 1.0]]
    with pytest.raises(ResultShapeError, match="binding results"):
        binding_values(success([[1.0, 0.5]]), asked)
    with pytest.raises(ResultShapeError, match="observables"):
        binding_values(success([[1.0], [1.0, 0.5]]), asked)
    counts = pb.FragmentSuccess(results=[pb.BindingResult(counts=pb.Counts(counts={"00": 5}))])
    with pytest.raises(ResultShapeError, match="counts result"):
        binding_values(counts, Expected(1, "expectation", observables=2))
    # values are checked too (tests/unit/test_result_values.py): a forged one never counts
    with pytest.raises(ResultValueError, match=r"42\.0"):
        binding_values(success([[1.0, 0.5], [42.0, 0.0]]), asked)


def test_result_does_not_depend_on_arrival_order() -> None:
    job = spec(23)
    stored = [
        StoredFragment(
            p.program_index,
            p.binding_offset,
            [[float(p.binding_offset + i), 0.0] for i in range(p.binding_count)],
        )
        for p in plan_fragments(job, 5)
    ]
    expected = assemble_result(job, stored)
    random.Random(1).shuffle(stored)
    assert assemble_result(job, stored) == expected
    assert [v[0] for v in expected["programs"][0]["values"]] == [float(i) for i in range(23)]
    assert expected["observables"] == ["ZI", "IZ"]


def test_a_binding_counted_twice_or_missing_is_an_error() -> None:
    job = spec(4)
    half = StoredFragment(0, 0, [[0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="no value"):
        assemble_result(job, [half])
    with pytest.raises(ValueError, match="twice"):
        assemble_result(job, [half, half, StoredFragment(0, 2, [[0.0, 0.0], [0.0, 0.0]])])
