"""Names in fragment programs are resolved by scope when an agent bounds them (nodes/bounds.py).

The probe these tests answer: a loop variable, a subroutine or gate parameter or an inner
declaration named like a top-level ``const`` used to be costed at the constant's value, so a
program of 10**7 operations passed the 100,000-operation bound. Each form is tested with the
real Braket parser, and next to it the same program without the shadowing, which costs what it
always did. Small versions are run by Braket's own interpreter: the estimate never undercounts.
"""

from __future__ import annotations

import warnings

import pytest
from braket.default_simulator.openqasm.interpreter import Interpreter

from nodes.bounds import FragmentLimits, LimitExceeded, check_fragment, program_operations
from nodes.program import parse_program
from proto.qorch.v1 import fragments_pb2 as pb

#: The default bound (QORCH_MAX_PROGRAM_OPERATIONS) the probe passed.
BOUND = 100_000
LIMITS = FragmentLimits(
    max_qubits=20,
    max_program_chars=5000,
    max_nesting=8,
    max_operations=BOUND,
    max_bindings=10,
    max_shots=1000,
    max_observables=4,
)
HEADER = "OPENQASM 3.0;\nqubit[3] q;\n"
#: Iterations the shadowed name really stands for: 10**7 operations, 100 times the bound.
BIG = 10_000_000

UNKNOWN_RANGE = "must be a constant range or set"
OVER_BOUND = f"more than {BOUND} operations"

# Each program's inner loop really runs BIG times; ``n`` in it is not the top-level const.
LOOP_VARIABLE = "const int n = 1;\nfor int n in {{{BIG}}} {{ for int i in [0:n] {{ x q[0]; }} }}\n"
SUBROUTINE_PARAMETER = (
    "const int n = 1;\ndef f(int n, qubit a) {{ for int i in [0:n] {{ x a; }} }}\nf({BIG}, q[0]);\n"
)
GATE_PARAMETER = (
    "const int n = 1;\ngate g(n) a {{ for int i in [0:n] {{ x a; }} }}\ng({BIG}) q[0];\n"
)
# Braket resolves a subroutine's free names where it is called: here ``n`` is the loop variable.
CALLER_NAME = (
    "const int n = 1;\ndef f(qubit a) {{ for int i in [0:n] {{ x a; }} }}\n"
    "for int n in {{{BIG}}} {{ f(q[0]); }}\n"
)
INNER_DECLARATION = (
    "const int n = 1;\nfor int k in {{0}} {{ int n = {BIG}; for int i in [0:n] {{ x q[0]; }} }}\n"
)
INNER_CONST = (
    "const int n = 1;\n"
    "for int k in {{0}} {{ const int n = {BIG}; for int i in [0:n] {{ x q[0]; }} }}\n"
)
INNER_NOT_CONSTANT = (
    "const int n = 1;\nfor int k in {{{BIG}}} {{ int n = k; for int i in [0:n] {{ x q[0]; }} }}\n"
)
# ``if`` blocks and ``box`` bodies are no scope of their own in Braket: the name leaks out.
BRANCH_DECLARATION = (
    "const int n = 1;\nif (true) {{ int n = {BIG}; }}\nfor int i in [0:n] {{ x q[0]; }}\n"
)
BOX_DECLARATION = "const int n = 1;\nbox {{ int n = {BIG}; }}\nfor int i in [0:n] {{ x q[0]; }}\n"
# A later declaration of the name in the same scope does not reach back to earlier loops.
LATER_REDECLARATION = "const int n = {BIG};\nfor int i in [0:n] {{ x q[0]; }}\nint n = 1;\n"
# A subroutine defined twice: a call may meet either definition.
REDEFINED_SUBROUTINE = (
    "def f(qubit a) {{ for int i in [0:{BIG}] {{ x a; }} }}\nf(q[0]);\ndef f(qubit a) {{ x a; }}\n"
)

SHADOWING = [
    pytest.param(LOOP_VARIABLE, UNKNOWN_RANGE, id="for-loop-variable"),
    pytest.param(SUBROUTINE_PARAMETER, UNKNOWN_RANGE, id="subroutine-parameter"),
    pytest.param(GATE_PARAMETER, UNKNOWN_RANGE, id="gate-parameter"),
    pytest.param(CALLER_NAME, UNKNOWN_RANGE, id="subroutine-free-name-shadowed-by-caller"),
    pytest.param(INNER_DECLARATION, OVER_BOUND, id="inner-block-declaration"),
    pytest.param(INNER_CONST, OVER_BOUND, id="inner-block-const"),
    pytest.param(INNER_NOT_CONSTANT, UNKNOWN_RANGE, id="inner-block-declaration-not-constant"),
    pytest.param(BRANCH_DECLARATION, UNKNOWN_RANGE, id="declaration-leaking-from-if"),
    pytest.param(BOX_DECLARATION, UNKNOWN_RANGE, id="declaration-leaking-from-box"),
    pytest.param(LATER_REDECLARATION, OVER_BOUND, id="later-redeclaration"),
    pytest.param(REDEFINED_SUBROUTINE, OVER_BOUND, id="redefined-subroutine"),
]


def fragment(body: str) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f",
        job_id="j",
        program=HEADER + body,
        result_kind=pb.RESULT_KIND_PROBABILITIES,
    )


def operations(body: str) -> int:
    return program_operations(parse_program(HEADER + body), BOUND)


def braket_operations(body: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Braket warns about the integer overflows it runs
        circuit = Interpreter().build_circuit(HEADER + body)
    return len(circuit.instructions)


def test_a_for_loop_variable_named_like_a_const_is_not_the_const() -> None:
    """Form (a): was estimated at 4 operations and passed; runs 10**7."""
    with pytest.raises(LimitExceeded, match=UNKNOWN_RANGE):
        check_fragment(fragment(LOOP_VARIABLE.format(BIG=BIG)), LIMITS)


def test_the_same_loop_without_shadowing_costs_what_it_did() -> None:
    control = "const int n = 1;\nfor int m in {{{BIG}}} {{ for int i in [0:n] {{ x q[0]; }} }}\n"
    check_fragment(fragment(control.format(BIG=BIG)), LIMITS)
    assert operations(control.format(BIG=BIG)) == 4


@pytest.mark.parametrize("program", [SUBROUTINE_PARAMETER, GATE_PARAMETER])
def test_a_subroutine_or_gate_parameter_named_like_a_const_is_not_the_const(
    program: str,
) -> None:
    """Form (b): was estimated at 6 (subroutine) or 5 (gate) operations and passed."""
    with pytest.raises(LimitExceeded, match=UNKNOWN_RANGE):
        check_fragment(fragment(program.format(BIG=BIG)), LIMITS)


def test_the_same_subroutine_without_shadowing_costs_what_it_did() -> None:
    control = (
        "const int n = 1;\ndef f(int m, qubit a) {{ for int i in [0:n] {{ x a; }} }}\n"
        "f({BIG}, q[0]);\n"
    )
    check_fragment(fragment(control.format(BIG=BIG)), LIMITS)
    assert operations(control.format(BIG=BIG)) == 6


def test_an_inner_declaration_named_like_a_const_is_not_the_const() -> None:
    """Form (c): was estimated at 5 operations and passed; now costed at its inner value."""
    with pytest.raises(LimitExceeded, match=OVER_BOUND):
        check_fragment(fragment(INNER_DECLARATION.format(BIG=BIG)), LIMITS)
    # an inner value that is no compile-time constant is unknown, not the outer constant
    with pytest.raises(LimitExceeded, match=UNKNOWN_RANGE):
        check_fragment(fragment(INNER_NOT_CONSTANT.format(BIG=BIG)), LIMITS)


def test_the_same_block_without_shadowing_costs_what_it_did() -> None:
    control = (
        "const int n = 1;\n"
        "for int k in {{0}} {{ int m = {BIG}; for int i in [0:n] {{ x q[0]; }} }}\n"
    )
    check_fragment(fragment(control.format(BIG=BIG)), LIMITS)
    assert operations(control.format(BIG=BIG)) == 5


@pytest.mark.parametrize(("program", "reason"), SHADOWING)
def test_every_shadowing_form_is_refused(program: str, reason: str) -> None:
    with pytest.raises(LimitExceeded, match=reason):
        check_fragment(fragment(program.format(BIG=BIG)), LIMITS)


@pytest.mark.parametrize(("program", "reason"), SHADOWING)
def test_small_shadowing_programs_are_never_undercounted(program: str, reason: str) -> None:
    """Braket's interpreter runs the same programs at 7 iterations: the estimate is at least
    what it runs, or the program is refused."""
    source = program.format(BIG=7)
    try:
        estimate = operations(source)
    except LimitExceeded:
        return
    assert estimate >= braket_operations(source)


def test_a_top_level_const_as_a_loop_bound_is_still_costed_exactly() -> None:
    """Legitimate use: the const bounds loops at top level and inside a subroutine's body."""
    program = (
        "const int n = {N};\ndef f(qubit a) {{ for int i in [0:n] {{ x a; }} }}\n"
        "for int i in [0:9] {{ f(q[0]); }}\nfor int j in [0:n-1] {{ h q; }}\n"
    )
    # register, const, def: 1 each; 10 calls of 1 + (n + 1); n - 1 + 1 = n times h on 3 qubits
    assert operations(program.format(N=99)) == 3 + 10 * (1 + 100) + 99 * 3
    check_fragment(fragment(program.format(N=99)), LIMITS)
    with pytest.raises(LimitExceeded, match=OVER_BOUND):
        check_fragment(fragment(program.format(N=BIG)), LIMITS)
    assert operations(program.format(N=5)) >= braket_operations(program.format(N=5))


def test_a_shadowing_name_goes_out_of_scope_with_its_block() -> None:
    """After the loop that shadows it, ``n`` is the top-level const again."""
    program = (
        "const int n = {N};\nfor int n in {{1}} {{ x q[0]; }}\nfor int i in [0:n] {{ x q[1]; }}\n"
    )
    # register, const, the shadowing loop (1 iteration), then n + 1 = 10 iterations
    assert operations(program.format(N=9)) == 2 + 1 + 10
    with pytest.raises(LimitExceeded, match=OVER_BOUND):
        check_fragment(fragment(program.format(N=BIG)), LIMITS)


@pytest.mark.parametrize(
    "declaration",
    [
        "uint[32] n = -1;",  # wraps to 2**32 - 1
        "int[8] n = -200;",  # wraps to 56
        "const int n = uint[32](-1);",
        "bool n = -5;",  # true: 1
    ],
)
def test_a_value_a_typed_declaration_would_change_is_unknown(declaration: str) -> None:
    program = declaration + "\nfor int i in [0:n] { x q[0]; }\n"
    with pytest.raises(LimitExceeded, match=UNKNOWN_RANGE):
        check_fragment(fragment(program), LIMITS)


def test_a_typed_declaration_that_fits_keeps_its_value() -> None:
    # register and two declarations, then 99 * 9 + 1 iterations
    program = "int[32] n = 99;\nuint m = 9;\nfor int i in [0:n*m] { x q[0]; }\n"
    assert operations(program) == 3 + 892


@pytest.mark.parametrize(
    "body",
    [
        "def f(qubit[12] a) { h a; }\nf(q);\n",
        "def f(qubit[12] a) { for int i in [0:2] { h a; } }\nf(q);\n",
        "let r = q;\nh r;\n",
        "h q[0:2];\n",
    ],
)
def test_qubit_parameters_aliases_and_slices_count_every_qubit(body: str) -> None:
    """A register passed by another name is still applied qubit by qubit."""
    source = "OPENQASM 3.0;\nqubit[12] q;\n" + body
    estimate = program_operations(parse_program(source), BOUND)
    assert estimate >= len(Interpreter().build_circuit(source).instructions) >= 3
