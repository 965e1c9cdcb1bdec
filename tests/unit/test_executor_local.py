"""LocalExecutor against references built independently with ``braket.circuits.Circuit``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from braket.circuits import Circuit, Observable
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from nodes.executors.base import ExecutionError, Executor
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb

PROGRAM = """OPENQASM 3.0;
input float a;
input float b;
input float c;
qubit[4] q;
rx(a) q[0];
ry(b) q[1];
cnot q[0], q[1];
ry(c) q[2];
cnot q[1], q[2];
rx(a) q[3];
cnot q[2], q[3];
"""

BINDINGS = [
    {"a": 0.3, "b": 1.2, "c": -0.7},
    {"a": 2.1, "b": -0.4, "c": 0.9},
    {"a": 0.0, "b": 0.0, "c": 0.0},
]

OBSERVABLES = ["ZZII", "IIZZ", "XIIY", "IIII", "ZIIZ", "ZZII"]

PAULI = {"X": Observable.X, "Y": Observable.Y, "Z": Observable.Z}


def reference_circuit(values: dict[str, float]) -> Circuit:
    """The same circuit as PROGRAM, built with the Circuit API and bound values."""
    a, b, c = values["a"], values["b"], values["c"]
    return Circuit().rx(0, a).ry(1, b).cnot(0, 1).ry(2, c).cnot(1, 2).rx(3, a).cnot(2, 3)


def reference_expectations(values: dict[str, float], observables: Sequence[str]) -> list[float]:
    """One direct LocalSimulator('braket_sv') run per observable (identity = 1.0)."""
    device = LocalSimulator("braket_sv")
    expected = []
    for pauli in observables:
        targets = [i for i, c in enumerate(pauli) if c != "I"]
        if not targets:
            expected.append(1.0)
            continue
        observable = PAULI[pauli[targets[0]]]()
        for i in targets[1:]:
            observable = observable @ PAULI[pauli[i]]()
        circuit = reference_circuit(values).expectation(observable, target=targets)
        expected.append(float(device.run(circuit, shots=0).result().values[0]))
    return expected


def reference_probabilities(values: dict[str, float]) -> dict[str, float]:
    result = LocalSimulator("braket_sv").run(reference_circuit(values).probability(), shots=0)
    probabilities = result.result().values[0]
    return {format(i, "04b"): float(p) for i, p in enumerate(probabilities) if p != 0.0}


def fragment(kind: int, shots: int = 0, observables: Sequence[str] = ()) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f-1",
        job_id="j-1",
        attempt=1,
        pool="local-sv",
        program=PROGRAM,
        bindings=[pb.Binding(values=b) for b in BINDINGS],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=list(observables),
        qubits=4,
    )


@pytest.fixture(scope="module")
def sv() -> LocalExecutor:
    return LocalExecutor("braket_sv")


def test_is_an_executor(sv: LocalExecutor) -> None:
    assert isinstance(sv, Executor)
    assert sv.name == "braket_sv"


def test_expectations_equal_a_direct_simulator_run(sv: LocalExecutor) -> None:
    results = sv.execute(fragment(pb.RESULT_KIND_EXPECTATION, observables=OBSERVABLES))

    assert len(results) == len(BINDINGS)
    for values, result in zip(BINDINGS, results, strict=True):
        assert list(result.expectations.values) == reference_expectations(values, OBSERVABLES)


def test_identity_observable_is_one_without_a_simulation(sv: LocalExecutor) -> None:
    results = sv.execute(fragment(pb.RESULT_KIND_EXPECTATION, observables=["IIII", "iiii"]))

    assert [list(r.expectations.values) for r in results] == [[1.0, 1.0]] * len(BINDINGS)


def test_probabilities_equal_a_direct_simulator_run(sv: LocalExecutor) -> None:
    results = sv.execute(fragment(pb.RESULT_KIND_PROBABILITIES))

    for values, result in zip(BINDINGS, results, strict=True):
        assert dict(result.probabilities.probabilities) == reference_probabilities(values)
    # all-zero angles: the state stays |0000>, and zeros are omitted
    assert dict(results[2].probabilities.probabilities) == {"0000": 1.0}


def test_counts_sum_to_shots_for_each_binding(sv: LocalExecutor) -> None:
    results = sv.execute(fragment(pb.RESULT_KIND_COUNTS, shots=250))

    for result in results:
        counts = dict(result.counts.counts)
        assert sum(counts.values()) == 250
        assert all(len(bits) == 4 and set(bits) <= {"0", "1"} for bits in counts)
    assert dict(results[2].counts.counts) == {"0000": 250}


def test_sampled_expectations_split_non_commuting_observables(sv: LocalExecutor) -> None:
    """ZZII and XIIY act differently on qubit 0: sampling needs two tasks per binding."""
    results = sv.execute(fragment(pb.RESULT_KIND_EXPECTATION, shots=4000, observables=OBSERVABLES))

    for values, result in zip(BINDINGS, results, strict=True):
        exact = reference_expectations(values, OBSERVABLES)
        assert list(result.expectations.values) == pytest.approx(exact, abs=0.1)


@pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")
def test_density_matrix_backend_agrees_with_state_vector(sv: LocalExecutor) -> None:
    dm = LocalExecutor("braket_dm")
    assert dm.name == "braket_dm"

    expectations = dm.execute(fragment(pb.RESULT_KIND_EXPECTATION, observables=OBSERVABLES))
    probabilities = dm.execute(fragment(pb.RESULT_KIND_PROBABILITIES))

    for values, exp, prob in zip(BINDINGS, expectations, probabilities, strict=True):
        expected = reference_expectations(values, OBSERVABLES)
        assert list(exp.expectations.values) == pytest.approx(expected, abs=1e-9)
        reference = reference_probabilities(values)
        got = dict(prob.probabilities.probabilities)
        keys = {k for k in {*reference, *got} if max(reference.get(k, 0), got.get(k, 0)) > 1e-12}
        for key in keys:
            assert got.get(key, 0.0) == pytest.approx(reference.get(key, 0.0), abs=1e-9)


def test_idle_and_single_qubits_keep_their_place(sv: LocalExecutor) -> None:
    """Bitstrings cover every declared qubit in order, even ones no gate touches."""
    program = "OPENQASM 3.0;\nqubit[2] a;\nqubit b;\nqubit[2] c;\nx b;\nx c[1];\n"
    frag = pb.Fragment(
        fragment_id="f",
        job_id="j",
        program=program,
        bindings=[pb.Binding()],
        result_kind=pb.RESULT_KIND_PROBABILITIES,
    )
    assert [dict(r.probabilities.probabilities) for r in sv.execute(frag)] == [{"00101": 1.0}]

    frag.result_kind = pb.RESULT_KIND_EXPECTATION
    frag.observables[:] = ["IIZII", "ZIIII", "IIIIZ", "IIZIZ"]
    assert list(sv.execute(frag)[0].expectations.values) == [-1.0, 1.0, -1.0, 1.0]


def test_physical_qubits(sv: LocalExecutor) -> None:
    frag = pb.Fragment(
        fragment_id="f",
        job_id="j",
        program="OPENQASM 3.0;\nx $1;\n",
        bindings=[pb.Binding()],
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=["ZZ", "IZ", "ZI"],
        qubits=2,
    )
    assert list(sv.execute(frag)[0].expectations.values) == [-1.0, -1.0, 1.0]

    frag.result_kind = pb.RESULT_KIND_PROBABILITIES
    assert dict(sv.execute(frag)[0].probabilities.probabilities) == {"01": 1.0}


@pytest.mark.parametrize(
    ("program", "kind", "observables", "message"),
    [
        ("OPENQASM 3.0;\nqubit[2] q;\nfoo q[0];\n", pb.RESULT_KIND_PROBABILITIES, [], "foo"),
        ("OPENQASM 3.0;\nqubit[2] q\nh q[0];\n", pb.RESULT_KIND_PROBABILITIES, [], "syntax"),
        (PROGRAM.replace("input float c;\n", ""), pb.RESULT_KIND_PROBABILITIES, [], "c"),
        (PROGRAM, pb.RESULT_KIND_EXPECTATION, ["ZZ"], "4 qubits"),
        (PROGRAM, pb.RESULT_KIND_EXPECTATION, ["ZZQI"], "Pauli"),
        (PROGRAM, pb.RESULT_KIND_EXPECTATION, [], "observable"),
        (PROGRAM, pb.RESULT_KIND_COUNTS, [], "shots"),
        (PROGRAM, pb.RESULT_KIND_UNSPECIFIED, [], "result kind"),
        (
            PROGRAM + "#pragma braket result probability\n",
            pb.RESULT_KIND_PROBABILITIES,
            [],
            "result types",
        ),
    ],
    ids=[
        "unknown-gate",
        "syntax",
        "missing-input",
        "short-observable",
        "bad-pauli",
        "no-observables",
        "counts-without-shots",
        "no-kind",
        "own-result-pragma",
    ],
)
def test_bad_programs_fail_for_good(
    sv: LocalExecutor, program: str, kind: int, observables: list[str], message: str
) -> None:
    frag = fragment(kind, observables=observables)
    frag.program = program

    with pytest.raises(ExecutionError) as info:
        sv.execute(frag)

    assert info.value.retryable is False
    assert message in info.value.message


def test_non_finite_input_fails_for_good(sv: LocalExecutor) -> None:
    frag = fragment(pb.RESULT_KIND_PROBABILITIES)
    frag.bindings[1].values["b"] = float(np.nan)

    with pytest.raises(ExecutionError, match="binding 1: input 'b'") as info:
        sv.execute(frag)
    assert info.value.retryable is False


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="braket_sv"):
        LocalExecutor("braket_xx")


# -- what a failure of the simulator means: deterministic, or worth another attempt ----------

#: 12 qubits: Braket's numba kernels take over from 11 qubits on, and its kernel for a
#: single-qubit gate cannot type the non-contiguous slice a control on the last qubit makes:
#: ``LocalSimulator.run`` raises numba's TypingError (amazon-braket-default-simulator 1.41).
#: The controlled gate runs only for ``theta > 1``, so the failing binding is the third one.
TYPING_ERROR_PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[12] q;
h q;
rx(theta) q[0];
if (theta > 1.0) {
  ctrl @ h q[11], q[0];
}
"""
TYPING_ERROR_THETAS = (0.5, 0.7, 2.0, 3.0)


def typing_error_fragment() -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f-typing",
        job_id="j",
        attempt=1,
        pool="local-sv",
        program=TYPING_ERROR_PROGRAM,
        bindings=[pb.Binding(values={"theta": t}) for t in TYPING_ERROR_THETAS],
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=["Z" + "I" * 11],
        qubits=12,
    )


def test_braket_kernel_typing_error_is_real_and_deterministic() -> None:
    """The reproduction itself: LocalSimulator.run fails the same way every time."""
    from numba.core.errors import TypingError

    source = TYPING_ERROR_PROGRAM + "#pragma braket result probability q[0]\n"
    device = LocalSimulator("braket_sv")
    assert device.run(Program(source=source, inputs={"theta": 0.5}), shots=0).result()
    for _ in range(2):
        with pytest.raises(TypingError, match="reshape"):
            device.run(Program(source=source, inputs={"theta": 2.0}), shots=0).result()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "plain"])
def test_a_kernel_typing_error_fails_for_good_naming_the_binding(compiled: bool) -> None:
    executor = LocalExecutor("braket_sv", compiled=compiled)

    with pytest.raises(ExecutionError) as info:
        executor.execute(typing_error_fragment())

    assert info.value.retryable is False
    assert info.value.error_type == "TypingError"
    assert info.value.message.startswith("binding 2: ")
    assert "reshape() supports contiguous array only" in info.value.message


@pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")
def test_a_kernel_typing_error_on_the_density_matrix_fails_for_good() -> None:
    """The density-matrix simulator uses the same kernels from 6 qubits on."""
    frag = pb.Fragment(
        fragment_id="f",
        job_id="j",
        pool="local-dm",
        program="OPENQASM 3.0;\nqubit[6] q;\nh q;\nctrl @ h q[5], q[0];\n",
        bindings=[pb.Binding()],
        result_kind=pb.RESULT_KIND_PROBABILITIES,
        qubits=6,
    )
    with pytest.raises(ExecutionError, match=r"(?s)^binding 0: .*reshape") as info:
        LocalExecutor("braket_dm").execute(frag)
    assert (info.value.retryable, info.value.error_type) == (False, "TypingError")


@pytest.mark.parametrize(
    ("statement", "error_type", "message"),
    [
        ("#pragma braket noise bit_flip(0.1) q[0]", "TypeError", "Noise instructions"),
        ("#pragma braket unitary([[1, 0], [0, 2]]) q[0]", "ValueError", "is not unitary"),
        ("int[8] n = 1 / 0;", "ZeroDivisionError", "division"),
    ],
    ids=["noise-on-state-vector", "not-unitary", "division-by-zero"],
)
def test_programs_braket_cannot_run_fail_for_good(
    sv: LocalExecutor, statement: str, error_type: str, message: str
) -> None:
    frag = fragment(pb.RESULT_KIND_PROBABILITIES)
    frag.program = PROGRAM + statement + "\n"

    with pytest.raises(ExecutionError) as info:
        sv.execute(frag)

    assert (info.value.retryable, info.value.error_type) == (False, error_type)
    assert info.value.message.startswith("binding 0: ")
    assert message in info.value.message


def raising_on_binding(error: BaseException, binding: int) -> Callable[..., Any]:
    """A stand-in for ``LocalSimulator.run`` that runs every binding but ``binding``, where
    it raises ``error`` (bindings are told apart by their value of ``a``)."""
    device = LocalSimulator("braket_sv")

    def run(program: Program, shots: int = 0) -> Any:
        if program.inputs == BINDINGS[binding]:
            raise error
        return device.run(program, shots=shots)

    return run


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (MemoryError(), True),
        (OSError(24, "Too many open files"), True),
        (ConnectionResetError("reset"), True),
        (ValueError("Braket's validation"), False),
        (NotImplementedError("not supported"), False),
        (RuntimeError("anything else the simulator raises"), False),
        (KeyError("q"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_only_resource_errors_are_retryable(
    monkeypatch: pytest.MonkeyPatch, error: Exception, retryable: bool
) -> None:
    """Through the real executor path (compiled programs off: LocalSimulator.run is patched)."""
    executor = LocalExecutor("braket_sv", compiled=False)
    monkeypatch.setattr(executor._device, "run", raising_on_binding(error, 1))

    with pytest.raises(ExecutionError) as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))

    assert (info.value.retryable, info.value.error_type) == (retryable, type(error).__name__)
    assert info.value.message.startswith("binding 1: ")
    assert info.value.__cause__ is error


def test_an_injected_typing_error_fails_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core.errors import TypingError

    executor = LocalExecutor("braket_sv", compiled=False)
    monkeypatch.setattr(executor._device, "run", raising_on_binding(TypingError("no type"), 2))

    with pytest.raises(ExecutionError) as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))

    assert (info.value.retryable, info.value.message) == (False, "binding 2: no type")


def test_an_interrupt_is_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    executor = LocalExecutor("braket_sv", compiled=False)
    monkeypatch.setattr(executor._device, "run", raising_on_binding(KeyboardInterrupt(), 0))

    with pytest.raises(KeyboardInterrupt):
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))


def test_expectation_runs_map_to_their_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampled expectations of non-commuting observables take two runs per binding."""
    executor = LocalExecutor("braket_sv", compiled=False)
    monkeypatch.setattr(executor._device, "run", raising_on_binding(ValueError("bad"), 2))

    with pytest.raises(ExecutionError, match=r"^binding 2: bad$"):
        executor.execute(fragment(pb.RESULT_KIND_EXPECTATION, shots=10, observables=OBSERVABLES))
