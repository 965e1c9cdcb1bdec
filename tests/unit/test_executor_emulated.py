"""EmulatedExecutor against Braket's LocalEmulator run directly: the same results in exact mode,
the emulator's own refusal of a program that is not native to the device, and the emulated
queue's seeded delays. No part of Braket is replaced."""

from __future__ import annotations

import json
import math
import random
import time

import pytest
from braket.circuits import Circuit
from braket.emulation.local_emulator import LocalEmulator

from nodes.executors.base import ExecutionError, Executor, Used
from nodes.executors.emulated import EmulatedExecutor
from nodes.executors.factory import executor_for_pool
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.devices import SHIPPED_PROFILES, DeviceProfile

pytestmark = pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")

GARNET = SHIPPED_PROFILES["emu-garnet"]
FORTE = SHIPPED_PROFILES["emu-forte"]

#: A Bell state in IQM's native gates: prx(pi/2, pi/2) is ry(pi/2), and ry(-pi/2), cz, ry(pi/2)
#: on the target is a CNOT. ``theta`` = pi/2 gives (|00> + |11>)/sqrt(2) without noise.
BELL_GATES = """prx(theta, pi/2) q[0];
prx(-pi/2, pi/2) q[1];
cz q[0], q[1];
prx(pi/2, pi/2) q[1];
"""
HEADER = "OPENQASM 3.0;\ninput float theta;\nqubit[2] q;\n"
#: As one writes it for the device: the gates in a verbatim box.
BELL = f"{HEADER}#pragma braket verbatim\nbox {{\n{BELL_GATES}}}\n"
#: The same without the box: the executor boxes it.
BELL_UNBOXED = HEADER + BELL_GATES

THETAS = (math.pi / 2, 1.0, -2.5)

#: Exact (shots 0) results must agree this closely.
TOLERANCE = 1e-10


def direct_emulator(profile: DeviceProfile) -> LocalEmulator:
    """Braket's emulator of the profile, built the SDK's own way (from JSON)."""
    return LocalEmulator.from_json(json.dumps(profile.emulator_properties()))


def direct_values(profile: DeviceProfile, source: str, pragma: str, theta: float) -> list:
    """Result values of ``source`` with the result pragma, run on the emulator directly."""
    circuit = Circuit.from_ir(f"{source}{pragma}\n", inputs={"theta": theta})
    return list(direct_emulator(profile).run(circuit, shots=0).result().values)


def fragment(
    profile: DeviceProfile,
    program: str,
    kind: int,
    *,
    shots: int = 0,
    observables: tuple[str, ...] = (),
    thetas: tuple[float, ...] = THETAS,
) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f-1",
        job_id="job-1",
        attempt=1,
        pool=profile.pool,
        program=program,
        bindings=[pb.Binding(values={"theta": t}) for t in thetas],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=list(observables),
        qubits=2,
    )


def instant(profile: DeviceProfile = GARNET, seed: int = 0) -> EmulatedExecutor:
    """An executor whose queue delays are drawn but not waited."""
    return EmulatedExecutor(profile, seed=seed, sleep=lambda _s: None)


@pytest.mark.parametrize("program", [BELL, BELL_UNBOXED], ids=["verbatim", "boxed-by-executor"])
def test_a_bell_fragment_equals_the_local_emulator_run_directly(program: str) -> None:
    results = instant().execute(fragment(GARNET, program, pb.RESULT_KIND_PROBABILITIES))
    assert len(results) == len(THETAS)
    for theta, result in zip(THETAS, results, strict=True):
        (expected,) = direct_values(
            GARNET, BELL, "#pragma braket result probability q[0], q[1]", theta
        )
        got = result.probabilities.probabilities
        assert set(got) <= {"00", "01", "10", "11"}
        for index, probability in enumerate(expected):
            assert got.get(format(index, "02b"), 0.0) == pytest.approx(probability, abs=TOLERANCE)
    bell = results[0].probabilities.probabilities
    assert 0.97 < bell["00"] + bell["11"] < 1  # entangled, and noisy: Garnet's errors apply
    assert bell["01"] > 1e-4


def test_expectations_equal_the_local_emulator_run_directly() -> None:
    observables = ("ZI", "IZ", "XI", "II")
    results = instant().execute(
        fragment(GARNET, BELL, pb.RESULT_KIND_EXPECTATION, observables=observables)
    )
    for theta, result in zip(THETAS, results, strict=True):
        pragmas = "\n".join(
            f"#pragma braket result expectation {p}" for p in ("z(q[0])", "z(q[1])", "x(q[0])")
        )
        expected = direct_values(GARNET, BELL, pragmas, theta) + [1.0]
        assert list(result.expectations.values) == pytest.approx(expected, abs=TOLERANCE)


def test_an_all_to_all_device_measures_any_qubit() -> None:
    """IonQ reports an empty connectivity graph; the emulator is built with every pair in it,
    or Braket's emulator would refuse every result type that names a qubit."""
    program = f"{HEADER}gpi2(0) q[0];\nzz(theta) q[0], q[1];\ngpi2(0.25) q[1];\n"
    results = instant(FORTE).execute(fragment(FORTE, program, pb.RESULT_KIND_PROBABILITIES))
    for theta, result in zip(THETAS, results, strict=True):
        boxed = f"{HEADER}#pragma braket verbatim\nbox {{\n{program.removeprefix(HEADER)}}}\n"
        pragma = "#pragma braket result probability q[0], q[1]"
        (expected,) = direct_values(FORTE, boxed, pragma, theta)
        got = result.probabilities.probabilities
        for index, probability in enumerate(expected):
            assert got.get(format(index, "02b"), 0.0) == pytest.approx(probability, abs=TOLERANCE)

    raw = LocalEmulator.from_json(json.dumps(dict(FORTE.properties)))
    circuit = Circuit.from_ir(f"{boxed}{pragma}\n", inputs={"theta": 0.5})
    with pytest.raises(Exception, match="Qubit 0 in result type Probability is not a valid"):
        raw.validate(circuit)


def test_counts_sum_to_the_shots() -> None:
    executor = instant()
    results = executor.execute(fragment(GARNET, BELL, pb.RESULT_KIND_COUNTS, shots=200))
    for result in results:
        counts = result.counts.counts
        assert sum(counts.values()) == 200 and set(counts) <= {"00", "01", "10", "11"}
    # what the agent reports: a task per binding, as the device bills it
    assert executor.last_usage == Used(tasks=len(THETAS), shots=len(THETAS) * 200)


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ("h q[0];\ncz q[0], q[1];", "Gate H is not a native gate for this device."),
        (
            "prx(theta, 0) q[0];\ncnot q[0], q[1];",
            "Gate CNot is not a native gate for this device.",
        ),
    ],
    ids=["h", "cnot"],
)
def test_a_non_native_gate_fails_for_good_with_the_emulators_message(
    gates: str, message: str
) -> None:
    program = f"{HEADER}#pragma braket verbatim\nbox {{\n{gates}\n}}\n"
    waits: list[float] = []
    executor = EmulatedExecutor(GARNET, sleep=waits.append)
    with pytest.raises(ExecutionError) as failed:
        executor.execute(fragment(GARNET, program, pb.RESULT_KIND_PROBABILITIES))
    with pytest.raises(Exception) as direct:
        circuit = Circuit.from_ir(f"{program}#pragma braket result probability q[0], q[1]\n")
        direct_emulator(GARNET).validate(circuit)
    assert str(direct.value) == message
    assert failed.value.retryable is False
    assert failed.value.error_type == "ProgramError"
    assert failed.value.message == (
        f"the program does not run on IQM Garnet (pool emu-garnet): {message}"
    )
    assert waits == []  # refused before any task queued
    assert executor.last_usage is None  # nothing to report for a failure


def test_a_program_off_the_lattice_or_wider_than_the_device_fails_for_good() -> None:
    # Garnet's qubits 0 and 2 (QB1 and QB3) share no coupler
    off_lattice = "OPENQASM 3.0;\nqubit[3] q;\ncz q[0], q[2];\n"
    wide = "OPENQASM 3.0;\nqubit[21] q;\nprx(0.1, 0) q;\n"
    for program, message in (
        (off_lattice, "0 is not connected to qubit 2 in this device."),
        (wide, "Circuit must use at most 20 qubits, but uses 21 qubits."),
    ):
        work = fragment(GARNET, program, pb.RESULT_KIND_COUNTS, shots=10, thetas=(0.0,))
        with pytest.raises(ExecutionError) as failed:
            instant().execute(work)
        assert failed.value.retryable is False and failed.value.error_type == "ProgramError"
        assert failed.value.message.endswith(message), failed.value.message


def test_queue_delays_are_drawn_per_task_from_the_seeded_distribution() -> None:
    work = fragment(GARNET, BELL, pb.RESULT_KIND_PROBABILITIES)
    waits: list[float] = []
    executor = EmulatedExecutor(GARNET, seed=7, sleep=waits.append)
    executor.execute(work)
    executor.execute(work)

    draws = random.Random(7)
    expected = [draws.uniform(*GARNET.queue_s) for _ in range(2 * len(THETAS))]
    assert waits == list(executor.queue_waits) == expected
    assert all(GARNET.queue_s[0] <= w <= GARNET.queue_s[1] for w in waits)

    again: list[float] = []
    EmulatedExecutor(GARNET, seed=7, sleep=again.append).execute(work)
    assert again == expected[: len(THETAS)]
    other: list[float] = []
    EmulatedExecutor(GARNET, seed=8, sleep=other.append).execute(work)
    assert other != again


def test_the_queue_delay_is_waited() -> None:
    executor = EmulatedExecutor(GARNET, queue_s=(0.02, 0.04), seed=1)
    executor.execute(fragment(GARNET, BELL, pb.RESULT_KIND_PROBABILITIES, thetas=(0.0,)))
    start = time.monotonic()
    executor.execute(fragment(GARNET, BELL, pb.RESULT_KIND_PROBABILITIES))
    elapsed = time.monotonic() - start
    delays = list(executor.queue_waits)[1:]
    assert len(delays) == len(THETAS) and all(0.02 <= d <= 0.04 for d in delays)
    assert elapsed >= sum(delays)


def test_the_factory_serves_emu_pools_from_their_profiles() -> None:
    settings = Settings(emulator_queue_s={"emu-garnet": (0.0, 0.0)}, emulator_seed=5)
    executor = executor_for_pool("emu-garnet", settings)
    assert isinstance(executor, EmulatedExecutor) and isinstance(executor, Executor)
    assert executor.name == "LocalEmulator(garnet)" and executor.profile is GARNET
    executor.execute(fragment(GARNET, BELL, pb.RESULT_KIND_PROBABILITIES, thetas=(0.0,)))
    assert list(executor.queue_waits) == [0.0]
    executor.close()
    executor.close()  # twice is fine
    with pytest.raises(ValueError, match="unknown emulated device 'emu-nowhere'"):
        executor_for_pool("emu-nowhere", settings)
