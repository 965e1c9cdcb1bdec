"""A result's values are checked before they count: only values a run of the fragment can
produce are aggregated (docs: DESIGN.md, "Trust"). Pure checks, no I/O; the widths are
compared with what the agents' own executor writes."""

from __future__ import annotations

import math

import pytest

from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import (
    Expected,
    ResultShapeError,
    ResultValueError,
    binding_values,
    bitstring_width,
    check_counts,
    check_probabilities,
)

BELL = "OPENQASM 3.0; qubit[2] q; h q[0]; cnot q[0], q[1];"
#: Three qubits, two of them measured: counts cover the measured bits only.
MEASURED = (
    "OPENQASM 3.0; qubit[3] q; bit[2] c; h q[0]; cnot q[0], q[1]; "
    "c[0] = measure q[0]; c[1] = measure q[2];"
)
#: Three qubits declared, two used: counts cover the used ones, probabilities all three.
UNUSED = "OPENQASM 3.0; qubit[3] q; h q[0]; cnot q[0], q[1];"
PHYSICAL = "OPENQASM 3.0; h $0; cnot $0, $2;"
ROTATION = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[0]; cnot q[0], q[1];"


def expectations(*rows: list[float]) -> pb.FragmentSuccess:
    return pb.FragmentSuccess(
        results=[pb.BindingResult(expectations=pb.Expectations(values=r)) for r in rows]
    )


def counts(*rows: dict[str, int]) -> pb.FragmentSuccess:
    return pb.FragmentSuccess(results=[pb.BindingResult(counts=pb.Counts(counts=r)) for r in rows])


def probabilities(*rows: dict[str, float]) -> pb.FragmentSuccess:
    return pb.FragmentSuccess(
        results=[pb.BindingResult(probabilities=pb.Probabilities(probabilities=r)) for r in rows]
    )


# ---------------------------------------------------------------- expectations


def test_legitimate_expectations_count_float_noise_included() -> None:
    asked = Expected(3, "expectation", observables=2)
    rows = [[1.0, -1.0], [1.0000000000002, -1.0000000000002], [0.0, 0.123]]
    assert binding_values(expectations(*rows), asked) == rows


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (42.0, "42.0"),
        (-1.5, "-1.5"),
        (1.000001, "1.000001"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
    ],
)
def test_an_impossible_expectation_is_refused_with_the_binding_and_the_value(
    value: float, shown: str
) -> None:
    asked = Expected(2, "expectation", observables=2)
    with pytest.raises(ResultValueError) as refused:
        binding_values(expectations([0.5, 0.5], [0.5, value]), asked)
    message = str(refused.value)
    assert "binding 1" in message and shown in message and "observable 1" in message
    assert "[-1, 1]" in message


def test_the_older_positional_form_checks_expectations_too() -> None:
    assert binding_values(expectations([0.5]), 1, "expectations", 1) == [[0.5]]
    with pytest.raises(ResultValueError, match=r"42\.0"):
        binding_values(expectations([42.0]), 1, "expectations", 1)


def test_the_shape_is_still_checked() -> None:
    asked = Expected(2, "expectation", observables=2)
    with pytest.raises(ResultShapeError, match="1 binding results for a fragment of 2"):
        binding_values(expectations([0.5, 0.5]), asked)
    with pytest.raises(ResultShapeError, match="binding 1: 1 expectation values for 2"):
        binding_values(expectations([0.5, 0.5], [0.5]), asked)
    with pytest.raises(ResultShapeError, match="a counts result where expectations"):
        binding_values(counts({"00": 1}, {"00": 1}), asked)


# ---------------------------------------------------------------- counts


def test_counts_summing_to_the_shots_count() -> None:
    asked = Expected(2, "counts", shots=100, width=2)
    rows = [{"00": 48, "11": 52}, {"01": 100}]
    assert binding_values(counts(*rows), asked) == rows


def test_counts_that_do_not_sum_to_the_shots_are_refused() -> None:
    asked = Expected(1, "counts", shots=100, width=2)
    with pytest.raises(ResultValueError, match="binding 0: counts sum to 999999999, not the "):
        binding_values(counts({"11": 999999999}), asked)
    with pytest.raises(ResultValueError, match="counts sum to 99, not the fragment's 100 shots"):
        binding_values(counts({"00": 49, "11": 50}), asked)
    with pytest.raises(ResultValueError, match="counts sum to 0"):
        binding_values(counts({}), asked)


@pytest.mark.parametrize("key", ["1", "111", "1x", "2 ", "", "\u0661\u0660"])
def test_counts_bitstrings_of_another_width_or_alphabet_are_refused(key: str) -> None:
    asked = Expected(1, "counts", shots=100, width=2)
    with pytest.raises(ResultValueError, match=r"binding 0: counts bitstring .* is not 2 char"):
        binding_values(counts({"00": 50, key: 50}), asked)


def test_a_negative_count_is_refused() -> None:
    # the wire's uint64 cannot carry one; the check does not rely on that
    with pytest.raises(ResultValueError, match="count -5 of '11' is negative"):
        check_counts(3, {"00": 105, "11": -5}, 100, 2)


def test_a_huge_forged_bitstring_is_not_quoted_whole() -> None:
    asked = Expected(1, "counts", shots=1, width=2)
    with pytest.raises(ResultValueError) as refused:
        binding_values(counts({"1" * 100_000: 1}), asked)
    assert len(str(refused.value)) < 200 and "100000 characters" in str(refused.value)


# ---------------------------------------------------------------- probabilities


def test_legitimate_probabilities_count_float_noise_included() -> None:
    asked = Expected(3, "probabilities", width=2)
    rows = [
        {"00": 0.5, "11": 0.5},
        {"00": 0.4999999999999999, "11": 0.4999999999999999},  # sums to 0.9999999999999998
        {"01": 1.0, "10": -1e-17},  # a density matrix's rounding
    ]
    assert binding_values(probabilities(*rows), asked) == rows


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"00": 0.7, "11": 0.7}, "binding 0: probabilities sum to 1.4"),
        ({"00": 0.5}, "probabilities sum to 0.5"),
        ({}, "probabilities sum to 0"),
        ({"00": 1.5, "11": -0.5}, "probability -0.5 of '11' is not a probability"),
        ({"00": math.nan, "11": 1.0}, "probability nan of '00'"),
        ({"00": math.inf}, "probability inf of '00'"),
        ({"000": 1.0}, "probabilities bitstring '000' is not 2 characters"),
        ({"0b": 1.0}, "probabilities bitstring '0b' is not 2 characters"),
    ],
)
def test_impossible_probabilities_are_refused(row: dict[str, float], match: str) -> None:
    with pytest.raises(ResultValueError, match=match):
        binding_values(probabilities(row), Expected(1, "probabilities", width=2))


def test_the_sum_tolerance_is_a_millionth() -> None:
    assert check_probabilities(0, {"0": 0.5, "1": 0.5 + 5e-7}, 1)
    with pytest.raises(ResultValueError):
        check_probabilities(0, {"0": 0.5, "1": 0.5 + 2e-6}, 1)


# ---------------------------------------------------------------- what a fragment asks


def test_bitstring_results_need_their_width_and_counts_their_shots() -> None:
    with pytest.raises(ValueError, match="width"):
        Expected(1, "counts", shots=100)
    with pytest.raises(ValueError, match="shots"):
        Expected(1, "counts", width=2)
    with pytest.raises(ValueError, match="width"):
        Expected(1, "probabilities")
    with pytest.raises(ValueError, match="unknown result type"):
        Expected(1, "expectations")


def test_the_width_is_that_of_the_bits_the_program_returns() -> None:
    assert bitstring_width(BELL, "counts") == 2
    assert bitstring_width(BELL, "probabilities") == 2
    # a program measuring a subset of its qubits: its counts cover the measured bits
    assert bitstring_width(MEASURED, "counts") == 2
    # declared qubits no instruction touches: absent from counts, present in probabilities
    assert bitstring_width(UNUSED, "counts") == 2
    assert bitstring_width(UNUSED, "probabilities") == 3
    # physical qubits: those the circuit uses, or as many as the fragment says
    assert bitstring_width(PHYSICAL, "counts") == 2
    assert bitstring_width(PHYSICAL, "probabilities") == 2
    assert bitstring_width(PHYSICAL, "probabilities", 3) == 3
    assert bitstring_width(ROTATION, "counts") == 2  # inputs bound to zero still use q[0]
    with pytest.raises(ValueError, match="no bitstrings"):
        bitstring_width(BELL, "expectation")


def test_a_subset_measured_refuses_bitstrings_of_every_qubit() -> None:
    asked = Expected(1, "counts", shots=10, width=bitstring_width(MEASURED, "counts"))
    assert binding_values(counts({"00": 5, "10": 5}), asked) == [{"00": 5, "10": 5}]
    with pytest.raises(ResultValueError, match="'000' is not 2 characters"):
        binding_values(counts({"000": 10}), asked)


# ---------------------------------------------------------------- what the agents write

PROGRAMS = {
    "bell": BELL,
    "measured subset": MEASURED,
    "unused qubit": UNUSED,
    "physical": PHYSICAL,
    "rotation": ROTATION,
    "last qubit only": "OPENQASM 3.0; qubit[3] q; x q[2];",
    "two registers": "OPENQASM 3.0; qubit[2] a; qubit b; h a[0]; cnot a[0], b;",
    "measured backwards": (
        "OPENQASM 3.0; qubit[3] q; bit[3] c; x q[0]; "
        "c[0] = measure q[2]; c[1] = measure q[1]; c[2] = measure q[0];"
    ),
}
KINDS = {"counts": pb.RESULT_KIND_COUNTS, "probabilities": pb.RESULT_KIND_PROBABILITIES}


@pytest.fixture(scope="module", params=["braket_sv", "braket_dm"])
def executor(request: pytest.FixtureRequest) -> LocalExecutor:
    return LocalExecutor(request.param)


#: Every program with every result type it can ask for (measurements go with counts only).
CASES = [
    (name, result_type, shots)
    for name in sorted(PROGRAMS)
    for result_type, shots in (("counts", 100), ("probabilities", 0), ("probabilities", 100))
    if result_type == "counts" or "measure" not in PROGRAMS[name]
]


@pytest.mark.parametrize(("name", "result_type", "shots"), CASES)
def test_what_the_local_executors_write_is_accepted(
    executor: LocalExecutor, name: str, result_type: str, shots: int
) -> None:
    source = PROGRAMS[name]
    bindings = [pb.Binding(values={"a": a}) for a in (0.0, 0.7, 2.1)]
    fragment = pb.Fragment(
        program=source, shots=shots, result_kind=KINDS[result_type], bindings=bindings
    )
    success = pb.FragmentSuccess(results=executor.execute(fragment))
    width = bitstring_width(source, result_type)
    asked = Expected(3, result_type, shots=shots, width=width)
    values = binding_values(success, asked)
    assert all(isinstance(value, dict) for value in values)
    assert {len(key) for value in values if isinstance(value, dict) for key in value} == {width}


def test_exact_expectations_of_the_executor_are_accepted(executor: LocalExecutor) -> None:
    observables = ["ZZ", "XX", "ZI", "IZ", "II", "YY"]
    fragment = pb.Fragment(
        program=ROTATION,
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=observables,
        bindings=[pb.Binding(values={"a": a / 7}) for a in range(-22, 23)],
    )
    success = pb.FragmentSuccess(results=executor.execute(fragment))
    values = binding_values(success, Expected(45, "expectation", observables=6))
    assert len(values) == 45
