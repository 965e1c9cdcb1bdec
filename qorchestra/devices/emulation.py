"""Braket's emulator of a device profile, and programs as it takes them. Imports Braket; the
rest of :mod:`qorchestra.devices` does not.

The node agents of ``emu-*`` pools run programs with these (``nodes.executors.emulated``);
anything else that must judge a program as a device would (the ``qorch devices snapshot``
check, a submission-time check) uses the same two functions.
"""

from __future__ import annotations

import json

from braket.circuits import Circuit
from braket.circuits.compiler_directives import EndVerbatimBox, StartVerbatimBox
from braket.circuits.measure import Measure
from braket.emulation.local_emulator import LocalEmulator
from braket.schema_common.schema_base import BraketSchemaBase

from qorchestra.devices.profiles import DeviceProfile


def build_emulator(profile: DeviceProfile) -> LocalEmulator:
    """Braket's ``LocalEmulator`` of ``profile``'s device (the density-matrix backend).

    ValueError (Braket's message) for properties the emulator cannot be built from, e.g. a
    qubit without randomized-benchmarking data."""
    capabilities = BraketSchemaBase.parse_raw_schema(json.dumps(profile.emulator_properties()))
    return LocalEmulator.from_device_properties(capabilities)


def native_circuit(source: str) -> Circuit:
    """``source`` as a Braket circuit for the emulator: its gates in one verbatim box unless it
    has verbatim boxes of its own, measurements after the box, result types kept. Inputs stay
    free parameters, bound when the circuit runs.

    Raises what Braket's OpenQASM interpreter raises for a program it cannot build.
    """
    circuit = Circuit.from_ir(source)
    operators = [i.operator for i in circuit.instructions]
    if any(isinstance(op, StartVerbatimBox | EndVerbatimBox) for op in operators):
        return circuit
    body = Circuit([i for i in circuit.instructions if not isinstance(i.operator, Measure)])
    boxed = Circuit().add_verbatim_box(body) if body.instructions else Circuit()
    for instruction in circuit.instructions:
        if isinstance(instruction.operator, Measure):
            boxed.add_instruction(instruction)
    for result_type in circuit.result_types:
        boxed.add_result_type(result_type)
    return boxed
