"""Braket's emulator of a device profile, and programs as it takes them. Imports Braket; the
rest of :mod:`qorchestra.devices` does not.

The node agents of ``emu-*`` pools run programs with these (``nodes.executors.emulated``); the
API's parse workers judge a submitted program with :func:`checked_circuit` as the agent does
(``api/sandbox.py``), and ``qorch devices snapshot`` checks a profile with
:func:`build_emulator`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from braket.circuits import Circuit
from braket.circuits.compiler_directives import EndVerbatimBox, StartVerbatimBox
from braket.circuits.measure import Measure
from braket.emulation.local_emulator import LocalEmulator
from braket.schema_common.schema_base import BraketSchemaBase

from qorchestra.devices.profiles import DeviceProfile


class NotNative(ValueError):
    """The device cannot run the program as written; the message is the emulator's (or that of
    Braket's OpenQASM interpreter), e.g. ``Gate H is not a native gate for this device.``"""


def build_emulator(profile: DeviceProfile) -> LocalEmulator:
    """Braket's ``LocalEmulator`` of ``profile``'s device (the density-matrix backend).

    ValueError (Braket's message) for properties the emulator cannot be built from, e.g. a
    qubit without randomized-benchmarking data."""
    return emulator_from_properties(profile.emulator_properties())


def emulator_from_properties(properties: Mapping[str, Any]) -> LocalEmulator:
    """Braket's ``LocalEmulator`` built from a device's properties as
    ``DeviceProfile.emulator_properties`` gives them; ValueError as for :func:`build_emulator`."""
    capabilities = BraketSchemaBase.parse_raw_schema(json.dumps(properties))
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


def checked_circuit(emulator: LocalEmulator, source: str) -> Circuit:
    """``source`` as a native circuit (:func:`native_circuit`), checked by ``emulator``'s
    validation passes: native gates, connectivity, qubit count, result types. NotNative with
    the emulator's message when the device cannot run it (``EmulatorValidationError``), or
    with the interpreter's when Braket cannot build the circuit."""
    try:
        circuit = native_circuit(source)
        emulator.validate(circuit)
    except MemoryError:  # the machine's limit, not the program's fault as the device sees it
        raise
    except Exception as exc:  # Braket raises ValueError, TypeError, KeyError, ...
        raise NotNative(_message(exc)) from exc
    return circuit


def _message(exc: BaseException) -> str:
    """Braket's message; KeyError's str() would quote it."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__
