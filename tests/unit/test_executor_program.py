"""The pure part of execution: which source runs, and how results map back."""

from __future__ import annotations

import pytest

from nodes.program import ProgramError, ProgramRun, parse_program, prepare, qubit_registers
from proto.qorch.v1 import fragments_pb2 as pb

SIX = "OPENQASM 3.0;\nqubit[6] q;\nh q[0];\ncnot q[0], q[1];\n"
EXPECTATION = pb.RESULT_KIND_EXPECTATION


def pragmas(run: ProgramRun) -> list[str]:
    return [line for line in run.source.splitlines() if line.startswith("#pragma")]


def test_pauli_string_becomes_a_tensor_product_on_named_qubits() -> None:
    prepared = prepare(SIX, EXPECTATION, ("ZZIIII", "IIIXIY"))

    (run,) = prepared.runs
    assert run.source.startswith(SIX)
    assert pragmas(run) == [
        "#pragma braket result expectation z(q[0]) @ z(q[1])",
        "#pragma braket result expectation x(q[3]) @ y(q[5])",
    ]
    assert run.observables == ((0,), (1,))


def test_registers_in_declaration_order_and_single_qubits() -> None:
    program = "OPENQASM 3.0;\nconst int n = 2;\nqubit[n] a;\nqubit b;\nqreg c[1];\nx b;"
    assert [(r.name, r.size) for r in qubit_registers(parse_program(program))] == [
        ("a", 2),
        ("b", None),
        ("c", 1),
    ]

    prepared = prepare(program, EXPECTATION, ("IZZI", "XIIZ"))
    assert pragmas(prepared.runs[0]) == [
        "#pragma braket result expectation z(a[1]) @ z(b)",
        "#pragma braket result expectation x(a[0]) @ z(c[0])",
    ]
    probabilities = prepare(program, pb.RESULT_KIND_PROBABILITIES)
    assert pragmas(probabilities.runs[0]) == [
        "#pragma braket result probability a[0], a[1], b, c[0]"
    ]


def test_physical_qubits_when_none_is_declared() -> None:
    prepared = prepare("OPENQASM 3.0;\nx $1;\n", EXPECTATION, ("ZIZ",), qubits=3)
    assert pragmas(prepared.runs[0]) == ["#pragma braket result expectation z($0) @ z($2)"]


def test_identity_and_repeated_observables_are_not_sent_twice() -> None:
    prepared = prepare(SIX, EXPECTATION, ("IIIIII", "ZIIIII", "ZIIIII"))

    (run,) = prepared.runs
    assert pragmas(run) == ["#pragma braket result expectation z(q[0])"]
    assert run.observables == ((1, 2),)
    assert prepared.constants == ((0, 1.0),)
    assert prepare(SIX, EXPECTATION, ("IIIIII",)).runs == ()


def test_sampling_splits_observables_that_act_differently_on_a_qubit() -> None:
    observables = ("ZZIIII", "ZIIIII", "XIIIII", "IZXIII", "XIZIII")
    exact = prepare(SIX, EXPECTATION, observables, shots=0)
    sampled = prepare(SIX, EXPECTATION, observables, shots=100)

    assert len(exact.runs) == 1
    assert [run.observables for run in sampled.runs] == [((0,), (1,), (3,)), ((2,), (4,))]


def test_counts_run_as_is() -> None:
    prepared = prepare(SIX, pb.RESULT_KIND_COUNTS, shots=10)
    assert prepared.runs == (ProgramRun(SIX),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": EXPECTATION, "observables": ("ZZ",)}, "has 2 letters but the program has 6"),
        ({"kind": EXPECTATION, "observables": ("ZZIIIA",)}, "Pauli string"),
        ({"kind": pb.RESULT_KIND_COUNTS}, "shots > 0"),
        ({"kind": 99}, "unsupported result kind"),
    ],
    ids=["length", "letters", "counts-shots", "kind"],
)
def test_invalid_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        prepare(SIX, **kwargs)


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ProgramError, match="syntax error: line 3"):
        parse_program("OPENQASM 3.0;\nqubit[2] q;\nh q[0]] ;\n")
