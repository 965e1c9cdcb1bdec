"""The bounds a node agent checks on untrusted fragments before running them (nodes/bounds.py)."""

from __future__ import annotations

import pytest
from braket.default_simulator.openqasm.interpreter import Interpreter

from nodes.bounds import (
    FragmentLimits,
    LimitExceeded,
    check_fragment,
    program_operations,
    program_qubits,
)
from nodes.program import ProgramError, parse_program
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings

LIMITS = FragmentLimits(
    max_qubits=10,
    max_program_chars=5000,
    max_nesting=8,
    max_operations=1000,
    max_bindings=100,
    max_shots=1000,
    max_observables=4,
)
HEADER = "OPENQASM 3.0;\ninput float theta;\nqubit[3] q;\n"


def fragment(program: str = HEADER + "rx(theta) q[0];\n", **fields: object) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f",
        job_id="j",
        program=program,
        bindings=[pb.Binding(values={"theta": 0.5})],
        result_kind=pb.RESULT_KIND_PROBABILITIES,
        **fields,  # type: ignore[arg-type]
    )


def refusal(frag: pb.Fragment, limits: FragmentLimits = LIMITS) -> str:
    with pytest.raises(LimitExceeded) as info:
        check_fragment(frag, limits)
    return str(info.value)


def test_an_ordinary_fragment_passes() -> None:
    check_fragment(fragment(), LIMITS)
    loops = HEADER + "const int n = 4;\nfor int i in [0:n-1] { h q; cnot q[0], q[1]; }\n"
    check_fragment(fragment(loops), LIMITS)


def test_limits_come_from_the_pool_settings() -> None:
    settings = Settings(pool_max_qubits={"aws-sv1": 7}, max_program_operations=55)
    limits = FragmentLimits.for_pool(settings, "aws-sv1")
    assert (limits.max_qubits, limits.max_operations) == (7, 55)
    assert FragmentLimits.for_pool(settings, "local-dm").max_qubits == settings.max_qubits(
        "local-dm"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # a few bytes that Braket would unroll into a hundred million gates
        (HEADER + "for int i in [0:100000000] { x q[0]; }\n", "more than 1000 operations"),
        (
            HEADER
            + "for int i in [0:9] { for int j in [0:9] { for int k in [0:9] { x q[0]; } } }\n",
            "more than 1000 operations",
        ),
        # gate definitions that double at every level: 2**30 gates
        (
            HEADER
            + "gate g0 a { x a; }\n"
            + "".join(f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, 31))
            + "g30 q[0];\n",
            "more than 1000 operations",
        ),
        (HEADER + "gate g a { x a; }\npow(5000) @ g q[0];\n", "more than 1000 operations"),
        (
            HEADER + "def f(qubit a) { for int i in [0:99] { x a; } }\n"
            "for int i in [0:99] { f(q[0]); }\n",
            "more than 1000 operations",
        ),
        (HEADER + "while (true) { x q[0]; }\n", "while loops"),
        (HEADER + "def f(qubit a) { x a; f(a); }\nf(q[0]);\n", "calls itself"),
        (HEADER + "int n = 3;\nn = 1000000;\nfor int i in [0:n] { x q[0]; }\n", "constant range"),
        ("OPENQASM 3.0;\nqubit[4] a;\nqubit[7] b;\nh a;\n", "11 qubits; this pool allows 10"),
        ("OPENQASM 3.0;\nh $12;\n", "13 qubits"),
        (HEADER + "x q[0];" * 1000, "at most 5000"),
        (HEADER + "rx(" + "(" * 9 + "theta" + ")" * 9 + ") q[0];\n", "nested 10 deep"),
    ],
)
def test_programs_over_a_bound_are_refused_with_the_reason(source: str, reason: str) -> None:
    assert reason in refusal(fragment(source))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"shots": 10**9}, "1000000000 shots; at most 1000"),
        ({"qubits": 4_000_000_000}, "4000000000 qubits"),
        ({"observables": ["ZII"] * 5}, "5 observables; at most 4"),
        # an encoding expands to samples x shifts bindings: refused before expanding
        (
            {
                "encoding": pb.Encoding(
                    samples=[pb.Sample(values=[1.0])] * 20, shifts=[pb.WeightShift()] * 20
                )
            },
            "400 bindings",
        ),
        ({"encoding": pb.Encoding(qubits=2**31)}, "encoding for 2147483648 qubits"),
    ],
)
def test_fragment_fields_over_a_bound_are_refused(fields: dict[str, object], reason: str) -> None:
    frag = fragment()
    if "encoding" in fields:
        del frag.bindings[:]
    for name, value in fields.items():
        if name == "encoding":
            frag.encoding.CopyFrom(value)  # type: ignore[arg-type]
        elif name == "observables":
            frag.observables.extend(value)  # type: ignore[arg-type]
        else:
            setattr(frag, name, value)
    assert reason in refusal(frag)


def test_a_program_that_does_not_parse_is_a_program_error() -> None:
    with pytest.raises(ProgramError, match="syntax error"):
        check_fragment(fragment("OPENQASM 3.0;\nqubit[2 q;\n"), LIMITS)


@pytest.mark.parametrize(
    "body",
    [
        "h q;\ncnot q[0], q[1];\n",
        "for int i in [0:4] { rx(theta) q[0]; h q; }\n",
        "for int i in [10:-2:1] { x q[1]; }\n",
        "for int i in {1, 5, 9} { if (i > 4) { x q[0]; } else { h q; } }\n",
        "gate g(a) b, c { rx(a) b; cnot b, c; }\ngate gg b, c { g(0.1) b, c; g(0.2) c, b; }\n"
        "for int i in [0:2] { gg q[0], q[1]; }\npow(3) @ gg q[1], q[2];\n",
        "def f(qubit a) { x a; h a; }\nfor int i in [0:2] { f(q[i]); }\n",
    ],
)
def test_the_estimate_is_at_least_what_braket_runs(body: str) -> None:
    """Braket's own interpreter, run on small programs: the estimate never undercounts."""
    source = HEADER + body
    circuit = Interpreter().build_circuit(source, inputs={"theta": 0.3})
    estimate = program_operations(parse_program(source), 10**6)
    assert estimate >= len(circuit.instructions) > 0
    assert program_qubits(parse_program(source)) == 3
