"""The compiled path (interpret once, bind many times) against ``LocalSimulator.run``.

Exact results must be identical (``==``), sampled ones must come from the same distribution,
and what the compiled path does not support must still run (through LocalSimulator.run).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import numpy as np
import pytest
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from nodes.executors.base import ExecutionError
from nodes.executors.compiled import Unsupported, compile_program
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb


def ansatz(qubits: int, layers: int = 3) -> str:
    """A hardware-efficient ansatz: RY and (negated) RZ per qubit, then a CNOT ladder."""
    names = [f"p{i}" for i in range(2 * qubits * layers)]
    lines = ["OPENQASM 3.0;", *(f"input float {n};" for n in names), f"qubit[{qubits}] q;"]
    k = 0
    for _ in range(layers):
        for i in range(qubits):
            lines += [f"ry({names[k]}) q[{i}];", f"rz(-{names[k + 1]}) q[{i}];"]
            k += 2
        lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(qubits - 1)]
    return "\n".join(lines) + "\n"


FEATURES = """OPENQASM 3.0;
input float a;
input angle b;
input float c;
const float half = pi / 2;
gate layer(t, s) x, y { ry(t) x; rz(s) y; cz x, y; }
qubit[3] q;
h q;
layer(a, -c) q[0], q[2];
ctrl @ rx(b) q[1], q[0];
inv @ U(a, 0.25, c) q[2];
ms(a, b, 0.5) q[0], q[2];
pow(2) @ ry(c) q[1];
rx(half) q[0];
negctrl @ x q[2], q[1];
xx(b) q[0], q[1];
"""

PHYSICAL = "OPENQASM 3.0;\ninput float a;\nrx(a) $0;\ncnot $0, $2;\nry(-a) $2;\n"

EXACT_RESULTS = (
    "#pragma braket result probability\n"
    "#pragma braket result expectation z(q[0]) @ x(q[2])\n"
    "#pragma braket result expectation y(q[1])\n"
)


def bindings(names: list[str], count: int, seed: int = 3) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{n: rng.uniform(-2 * math.pi, 2 * math.pi) for n in names} for _ in range(count)]


def assert_same_values(expected: list[object], got: list[object]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        if isinstance(want, np.ndarray):
            assert np.array_equal(want, np.asarray(have))
        else:
            assert want == have


@pytest.mark.parametrize("backend", ["braket_sv", "braket_dm"])
@pytest.mark.parametrize(
    ("source", "names"),
    [
        (ansatz(4), [f"p{i}" for i in range(24)]),
        (FEATURES + EXACT_RESULTS, ["a", "b", "c"]),
        (PHYSICAL + "#pragma braket result probability\n", ["a"]),
        (PHYSICAL + "#pragma braket result expectation z($0) @ z($2)\n", ["a"]),
    ],
    ids=["ansatz", "gate-defs-modifiers-angle", "physical-probability", "physical-expectation"],
)
@pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")
def test_exact_results_are_identical(backend: str, source: str, names: list[str]) -> None:
    if "result" not in source:
        source += "#pragma braket result probability\n#pragma braket result expectation z(q[0])\n"
    device = LocalSimulator(backend)
    compiled = compile_program(device._delegate, source, shots=0)

    for values in bindings(names, 4):
        expected = device.run(Program(source=source, inputs=values), shots=0).result()
        assert_same_values(list(expected.values), compiled.run(values).values)


@pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")
def test_density_matrix_noise_is_identical() -> None:
    source = (
        "OPENQASM 3.0;\ninput float a;\nqubit[2] q;\nrx(a) q[0];\ncnot q[0], q[1];\n"
        "#pragma braket noise depolarizing(0.1) q[0]\n"
        "#pragma braket noise amplitude_damping(0.2) q[1]\n"
        "#pragma braket result probability\n"
    )
    device = LocalSimulator("braket_dm")
    compiled = compile_program(device._delegate, source, shots=0)

    for values in bindings(["a"], 3):
        expected = device.run(Program(source=source, inputs=values), shots=0).result()
        assert_same_values(list(expected.values), compiled.run(values).values)


def test_missing_input_is_a_name_error_as_in_braket() -> None:
    compiled = compile_program(LocalSimulator()._delegate, ansatz(2), shots=100)

    with pytest.raises(NameError, match="Missing input variable 'p1'"):
        compiled.run({"p0": 0.1})


@pytest.mark.parametrize(
    "source",
    [
        "OPENQASM 3.0;\ninput float a;\nqubit q;\nrx(2 * a) q;\n",
        "OPENQASM 3.0;\ninput float a;\nqubit q;\nif (a > 0) { x q; }\n",
        "OPENQASM 3.0;\ninput float a;\nqubit q;\nfloat b = a;\nrx(b) q;\n",
        "OPENQASM 3.0;\ninput float a;\nqubit q;\nrx(a) q;\ngphase(a);\n",
        "OPENQASM 3.0;\nqubit q;\nfoo q;\n",
    ],
    ids=["expression", "control-flow", "classical-variable", "input-phase", "unknown-gate"],
)
def test_unsupported_programs_are_refused(source: str) -> None:
    with pytest.raises(Unsupported):
        compile_program(LocalSimulator()._delegate, source, shots=10)


def fragment(
    program: str,
    values: list[dict[str, float]],
    kind: int,
    shots: int = 0,
    observables: tuple[str, ...] = (),
) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f",
        job_id="j",
        program=program,
        bindings=[pb.Binding(values=v) for v in values],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=list(observables),
    )


def results_of(executor: LocalExecutor, frag: pb.Fragment) -> list[bytes]:
    return [r.SerializeToString(deterministic=True) for r in executor.execute(frag)]


@pytest.mark.parametrize(
    ("kind", "observables"),
    [
        (pb.RESULT_KIND_PROBABILITIES, ()),
        (pb.RESULT_KIND_EXPECTATION, ("ZZII", "IXYI", "IIII", "ZIIZ")),
    ],
    ids=["probabilities", "expectation"],
)
def test_executor_paths_give_identical_exact_results(
    kind: int, observables: tuple[str, ...]
) -> None:
    fast, plain = LocalExecutor(), LocalExecutor(compiled=False)
    frag = fragment(ansatz(4), bindings([f"p{i}" for i in range(24)], 6), kind, 0, observables)

    assert results_of(fast, frag) == results_of(plain, frag)
    assert (fast.compiled_fragments, fast.plain_fragments) == (1, 0)
    assert (plain.compiled_fragments, plain.plain_fragments) == (0, 1)


@pytest.mark.parametrize("qubits", [8, 12])  # the benchmark's sizes; 12 uses numba's threads
def test_agent_executor_equals_local_simulator_at_benchmark_sizes(qubits: int) -> None:
    """The agent's executor as an agent runs it (compiled path, one simulator thread) gives
    exactly what ``LocalSimulator.run`` gives, binding by binding (that no threading layer
    changes a result is tested in ``test_kernel_threading.py``)."""
    source = ansatz(qubits)
    names = [f"p{i}" for i in range(6 * qubits)]
    observables = ("Z" + "I" * (qubits - 1), "XY" + "Z" * (qubits - 2))
    values = bindings(names, 3, seed=qubits)
    agent = LocalExecutor("braket_sv", threads=1)
    got = agent.execute(fragment(source, values, pb.RESULT_KIND_EXPECTATION, 0, observables))
    assert agent.compiled_fragments == 1

    results = "".join(
        "#pragma braket result expectation "
        + " @ ".join(f"{p.lower()}(q[{i}])" for i, p in enumerate(o) if p != "I")
        + "\n"
        for o in observables
    )
    device = LocalSimulator("braket_sv")
    for binding, result in zip(values, got, strict=True):
        expected = device.run(Program(source=source + results, inputs=binding), shots=0).result()
        assert list(result.expectations.values) == list(expected.values)


def test_unsupported_program_falls_back_to_local_simulator() -> None:
    fast, plain = LocalExecutor(), LocalExecutor(compiled=False)
    program = "OPENQASM 3.0;\ninput float a;\nqubit[2] q;\nrx(2 * a) q[0];\ncnot q[0], q[1];\n"
    frag = fragment(program, bindings(["a"], 3), pb.RESULT_KIND_PROBABILITIES)

    assert results_of(fast, frag) == results_of(plain, frag)
    assert (fast.compiled_fragments, fast.plain_fragments) == (0, 1)


def test_a_bad_binding_reports_braket_error() -> None:
    frag = fragment(ansatz(2), [{"p0": 0.1}], pb.RESULT_KIND_PROBABILITIES)

    with pytest.raises(ExecutionError, match="p1") as info:
        LocalExecutor().execute(frag)
    assert info.value.retryable is False


def exact_probabilities(program: str, values: dict[str, float]) -> dict[str, float]:
    frag = fragment(program, [values], pb.RESULT_KIND_PROBABILITIES)
    return dict(LocalExecutor(compiled=False).execute(frag)[0].probabilities.probabilities)


def assert_counts_follow(counts: Mapping[str, int], probabilities: Mapping[str, float]) -> None:
    """Each bitstring's count within 6 binomial standard deviations of its expectation."""
    shots = sum(counts.values())
    assert set(counts) <= {k for k, p in probabilities.items() if p > 0}
    for bits, p in probabilities.items():
        mean = shots * p
        spread = 6 * math.sqrt(shots * p * (1 - p)) + 1
        assert abs(counts.get(bits, 0) - mean) <= spread, (bits, counts.get(bits, 0), mean)


def test_counts_come_from_the_exact_distribution() -> None:
    program = ansatz(3)
    values = bindings([f"p{i}" for i in range(18)], 2, seed=11)
    shots = 20_000
    frag = fragment(program, values, pb.RESULT_KIND_COUNTS, shots)
    fast = LocalExecutor()

    results = fast.execute(frag)

    assert fast.compiled_fragments == 1
    for binding, result in zip(values, results, strict=True):
        counts = dict(result.counts.counts)
        assert sum(counts.values()) == shots
        assert_counts_follow(counts, exact_probabilities(program, binding))


def test_measured_subset_keeps_the_measurement_order() -> None:
    """Counts of ``c[0] = measure q[2]; c[1] = measure q[0];`` list q[2] first, like Braket."""
    program = (
        "OPENQASM 3.0;\ninput float a;\nqubit[3] q;\nbit[2] c;\nrx(a) q[0];\nx q[2];\n"
        "c[0] = measure q[2];\nc[1] = measure q[0];\n"
    )
    values = {"a": 1.1}
    frag = fragment(program, [values], pb.RESULT_KIND_COUNTS, 20_000)
    fast, plain = LocalExecutor(), LocalExecutor(compiled=False)

    got = dict(fast.execute(frag)[0].counts.counts)
    reference = dict(plain.execute(frag)[0].counts.counts)

    assert fast.compiled_fragments == 1
    assert set(got) == set(reference) == {"10", "11"}
    p_one = math.sin(1.1 / 2) ** 2
    assert_counts_follow(got, {"10": 1 - p_one, "11": p_one})


def test_sampled_expectations_match_exact_ones() -> None:
    program = ansatz(4)
    values = bindings([f"p{i}" for i in range(24)], 2, seed=5)
    observables = ("ZZII", "IXYI", "ZIIZ")
    exact = LocalExecutor().execute(
        fragment(program, values, pb.RESULT_KIND_EXPECTATION, 0, observables)
    )

    sampled = LocalExecutor().execute(
        fragment(program, values, pb.RESULT_KIND_EXPECTATION, 20_000, observables)
    )

    for want, got in zip(exact, sampled, strict=True):
        # a +-1 observable's sample mean has standard deviation <= 1/sqrt(shots) = 0.007
        assert list(got.expectations.values) == pytest.approx(
            list(want.expectations.values), abs=0.05
        )
