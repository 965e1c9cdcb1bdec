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
from braket.circuits.observables import TensorProduct
from braket.circuits.result_types import Expectation
from braket.devices import LocalSimulator
from braket.emulation.local_emulator import LocalEmulator
from braket.emulation.passes.circuit_passes import RemoveVerbatimTransformation
from braket.schema_common.schema_base import BraketSchemaBase
from braket.tasks import GateModelQuantumTaskResult

from qorchestra.devices.native import compile_to_native
from qorchestra.devices.profiles import DeviceGates, DeviceProfile


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


def native_circuit(source: str, gates: DeviceGates | None = None) -> Circuit:
    """``source`` as a Braket circuit for the emulator of a device with ``gates``: its
    supported gates outside verbatim boxes compiled to its native gates (as the real device's
    compiler would: ``qorchestra.devices.native``), then the whole body in one verbatim box,
    measurements after the box, result types kept. For a native gate set it has no compiler
    for, the gates are kept as written, in one box unless the program has boxes of its own.
    Inputs stay free parameters, bound when the circuit runs.

    Raises what Braket's OpenQASM interpreter raises for a program it cannot build.
    """
    circuit = Circuit.from_ir(source)
    if gates is not None and gates.family is not None:
        return compile_to_native(circuit, gates)
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


def checked_circuit(
    emulator: LocalEmulator, source: str, gates: DeviceGates | None = None
) -> Circuit:
    """``source`` as a native circuit (:func:`native_circuit`, compiled for ``gates``, the
    emulated device's), checked by ``emulator``'s validation passes: native gates,
    connectivity, qubit count, result types. NotNative with the emulator's message when the
    device cannot run it (``EmulatorValidationError``), or with the interpreter's when Braket
    cannot build the circuit."""
    try:
        circuit = native_circuit(source, gates)
        emulator.validate(_factored(circuit))
    except MemoryError:  # the machine's limit, not the program's fault as the device sees it
        raise
    except Exception as exc:  # Braket raises ValueError, TypeError, KeyError, ...
        raise NotNative(_message(exc)) from exc
    return circuit


def run_emulated(
    emulator: LocalEmulator,
    backend: LocalSimulator,
    circuit: Circuit,
    shots: int,
    inputs: Mapping[str, float],
) -> GateModelQuantumTaskResult:
    """Run a circuit from :func:`checked_circuit` as ``emulator.run`` would, on ``backend``
    (a ``braket_dm`` simulator): through the emulator's passes and noise model. Unlike
    ``emulator.run``, an expectation of a product of Paulis is taken as a device takes it (each
    factor measured), where the emulator's validator would refuse the product outright."""
    noisy = emulator.transform(_factored(circuit), apply_noise_model=True)
    program = Circuit(noisy.instructions)
    for result_type in circuit.result_types:
        program.add_result_type(result_type)
    runnable = RemoveVerbatimTransformation().run(program)
    return backend.run(runnable, shots=shots, inputs=dict(inputs)).result()


def _factored(circuit: Circuit) -> Circuit:
    """``circuit`` with each expectation of a tensor product replaced by the expectations of
    its factors, on their qubits: what the emulator's result-type validator judges (it knows
    single-qubit observables only)."""
    if not any(_is_product(rt) for rt in circuit.result_types):
        return circuit
    factored = Circuit(circuit.instructions)
    for result_type in circuit.result_types:
        if not _is_product(result_type):
            factored.add_result_type(result_type)
            continue
        targets = list(result_type.target)
        for factor in result_type.observable.factors:
            width = factor.qubit_count
            factored.add_result_type(Expectation(factor, targets[:width]))
            targets = targets[width:]
    return factored


def _is_product(result_type: Any) -> bool:
    if not isinstance(result_type, Expectation):
        return False
    return isinstance(result_type.observable, TensorProduct)


def _message(exc: BaseException) -> str:
    """Braket's message; KeyError's str() would quote it."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__
