"""Programs compiled to an emulated device's native gates (``qorchestra.devices.native``): every
gate a shipped device supports becomes the same unitary (up to a global phase) in that device's
native gates only, with the program's inputs still free; what the device does not support, and
what a verbatim box holds, is left for the emulator to judge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from braket.circuits import Circuit
from braket.circuits.compiler_directives import EndVerbatimBox, StartVerbatimBox
from braket.circuits.gate import Gate
from braket.devices import LocalSimulator

from qorchestra.devices import SHIPPED_PROFILES
from qorchestra.devices.emulation import NotNative, build_emulator, checked_circuit
from qorchestra.devices.native import compile_to_native, zyz_angles
from qorchestra.devices.profiles import DeviceGates

pytestmark = pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")

ROOT = Path(__file__).resolve().parents[2]

#: One use of each gate any shipped device supports (and the modifiers the compiler takes),
#: on three qubits; ``a`` and ``w`` are inputs.
USES = {
    "i": "i q[0];",
    "x": "x q[0];",
    "y": "y q[1];",
    "z": "z q[0];",
    "h": "h q[2];",
    "s": "s q[0];",
    "si": "si q[0];",
    "t": "t q[1];",
    "ti": "ti q[0];",
    "v": "v q[0];",
    "vi": "vi q[2];",
    "rx": "rx(a) q[0];",
    "ry": "ry(2 * a - w) q[1];",
    "rz": "rz(w) q[0];",
    "phaseshift": "phaseshift(a) q[2];",
    "prx": "prx(a, w) q[0];",
    "cnot": "cnot q[1], q[0];",
    "cz": "cz q[0], q[2];",
    "cphaseshift": "cphaseshift(a) q[0], q[1];",
    "zz": "zz(a) q[1], q[2];",
    "xx": "xx(w) q[0], q[1];",
    "yy": "yy(a) q[0], q[2];",
    "swap": "swap q[0], q[1];",
    "iswap": "iswap q[1], q[2];",
    "ccnot": "ccnot q[0], q[1], q[2];",
    "cswap": "cswap q[2], q[0], q[1];",
    "ctrl @ x": "ctrl @ x q[2], q[0];",
    "pow @ h": "pow(0.3) @ h q[1];",
}
INPUTS = {"a": 0.731, "w": -1.204}
HEADER = "OPENQASM 3.0;\ninput float a;\ninput float w;\nqubit[3] q;\n"


def unitary(circuit: Circuit, inputs: dict[str, float]) -> np.ndarray:
    """The unitary of a circuit's gates (compiler directives left out) on three qubits."""
    gates = Circuit()
    for qubit in range(3):
        gates.i(qubit)
    for instruction in circuit.instructions:
        if isinstance(instruction.operator, Gate):
            gates.add_instruction(instruction)
    return np.asarray(gates.make_bound_circuit(inputs).to_unitary())


def same_up_to_phase(u: np.ndarray, v: np.ndarray) -> bool:
    return abs(abs(np.vdot(u, v)) - u.shape[0]) < 1e-9


@pytest.mark.parametrize("pool", sorted(SHIPPED_PROFILES))
@pytest.mark.parametrize("gate", sorted(USES))
def test_every_supported_gate_becomes_the_same_unitary_in_native_gates(
    pool: str, gate: str
) -> None:
    gates = SHIPPED_PROFILES[pool].gates
    name = gate.split()[-1]
    if name not in gates.supported and gate not in ("ctrl @ x", "pow @ h"):
        pytest.skip(f"{pool} does not support {name}")
    circuit = Circuit.from_ir(HEADER + USES[gate] + "\n")

    compiled = compile_to_native(circuit, gates)

    used = {i.operator.name.lower() for i in compiled.instructions if isinstance(i.operator, Gate)}
    assert used <= gates.native, used
    assert same_up_to_phase(unitary(circuit, INPUTS), unitary(compiled, INPUTS))
    assert {p.name for p in compiled.parameters} <= set(INPUTS)  # still free, bound per binding


def test_the_body_is_one_verbatim_box_and_what_it_held_stays_as_written() -> None:
    gates = SHIPPED_PROFILES["emu-garnet"].gates
    source = (
        HEADER + "h q[0];\n#pragma braket verbatim\nbox {\nprx(a, 0) q[1];\nh q[2];\n}\n"
        "bit[1] c;\nc[0] = measure q[0];\n"
    )
    compiled = compile_to_native(Circuit.from_ir(source), gates)

    operators = [i.operator for i in compiled.instructions]
    assert isinstance(operators[0], StartVerbatimBox)
    assert sum(isinstance(op, StartVerbatimBox | EndVerbatimBox) for op in operators) == 2
    names = [op.name for op in operators if isinstance(op, Gate)]
    assert names[-2:] == ["PRx", "H"]  # the box's own gates, not compiled
    assert names[:-2] and set(names[:-2]) == {"PRx"}  # h outside the box, compiled
    assert type(operators[-1]).__name__ == "Measure"  # after the box

    with pytest.raises(NotNative, match=r"Gate H is not a native gate for this device\."):
        checked_circuit(build_emulator(SHIPPED_PROFILES["emu-garnet"]), source, gates)


def test_a_gate_the_device_does_not_support_is_refused_by_name() -> None:
    forte = SHIPPED_PROFILES["emu-forte"]
    with pytest.raises(NotNative, match=r"Gate PRx is not a native gate for this device\."):
        checked_circuit(build_emulator(forte), HEADER + "prx(a, w) q[0];\n", forte.gates)


def test_a_native_gate_set_without_a_compiler_is_refused() -> None:
    with pytest.raises(ValueError, match="no compiler for the native gates ms"):
        compile_to_native(Circuit().h(0), DeviceGates(frozenset({"ms"}), frozenset({"h"})))


@pytest.mark.parametrize("pool", sorted(SHIPPED_PROFILES))
def test_the_bell_sweep_runs_on_each_emulated_device_close_to_the_ideal(pool: str) -> None:
    """examples/bell-sweep.json, as written (ry and cnot), on the device's emulator: its
    probabilities are the ideal ones blurred by the device's noise, no more."""
    profile = SHIPPED_PROFILES[pool]
    spec = json.loads((ROOT / "examples" / "bell-sweep.json").read_text())
    source = spec["programs"][0]["source"]
    emulator = build_emulator(profile)
    for binding in spec["programs"][0]["bindings"]:
        circuit = checked_circuit(emulator, source, profile.gates)
        circuit.probability(target=[0, 1])
        noisy = emulator.run(circuit, shots=0, inputs=binding).result().values[0]
        ideal_circuit = Circuit.from_ir(source).probability(target=[0, 1])
        ideal = LocalSimulator().run(ideal_circuit, shots=0, inputs=binding).result().values[0]
        assert math.isclose(float(np.sum(noisy)), 1.0, abs_tol=1e-9)
        assert np.max(np.abs(np.asarray(noisy) - np.asarray(ideal))) < 0.05


@pytest.mark.parametrize("seed", range(5))
def test_zyz_angles_rebuild_the_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    u, _ = np.linalg.qr(m)
    alpha, beta, gamma = zyz_angles(u)
    single = Circuit().rz(0, gamma).ry(0, beta).rz(0, alpha).to_unitary()
    assert same_up_to_phase(u, np.asarray(single))
