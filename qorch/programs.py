"""OpenQASM 3 from the programs users hold: a string, an Amazon Braket ``Circuit`` or a Qiskit
``QuantumCircuit``, each exported by its own library, with its free parameters as the program's
``input float`` declarations (what a job's bindings name).

Neither library is needed to import this module, and Braket is never imported at all (the SDK
must not import it: a contract checks it): a Braket circuit in hand brings its own exporter,
``Circuit.to_ir``. Qiskit is imported when a Qiskit circuit is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Gates Qiskit circuits are translated to before export: the ones Braket's OpenQASM
#: interpreter knows by the same name and with the same meaning. Qiskit writes every other
#: standard gate (``cx``, ``p``, ``sdg``, ...) by names Braket does not know, from a
#: ``stdgates.inc`` that Braket does not ship.
QISKIT_BASIS: tuple[str, ...] = (
    "h", "x", "y", "z", "s", "t", "rx", "ry", "rz", "cz", "cy", "swap", "cswap", "iswap",
)  # fmt: skip

_INPUT = re.compile(r"^input\s+(float|angle)(\[\d+\])?\s+([A-Za-z_][A-Za-z0-9_]*)\s*;\s*$")
_AUTO_BITS = re.compile(r"^bit\[(\d+)\] b;$")
_AUTO_MEASURE = re.compile(r"^b\[\d+\] = measure .+;$")


class ProgramConversionError(ValueError):
    """The program cannot be turned into OpenQASM 3 the platform runs; the message says why."""


@dataclass(frozen=True)
class Program:
    """A program as the platform takes it: OpenQASM 3 ``source``, its ``inputs`` (the names
    bindings give values to, in declaration order), and ``names``: each of the circuit's own
    parameter names whose ``input`` is named differently (Qiskit's ``w[0]`` is ``_w_0_``)."""

    source: str
    inputs: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)

    def binding(self, values: Mapping[Any, float]) -> dict[str, float]:
        """``values`` keyed by input name: keys may be input names, the circuit's parameter
        names, or its parameter objects (Qiskit ``Parameter``, Braket ``FreeParameter``)."""
        out: dict[str, float] = {}
        for key, value in values.items():
            name = key if isinstance(key, str) else str(getattr(key, "name", key))
            out[self.names.get(name, name)] = float(value)
        return out


def to_program(program: object) -> Program:
    """``program`` as OpenQASM 3: a ``str`` (taken as it is), a Braket ``Circuit`` or a Qiskit
    ``QuantumCircuit``. ProgramConversionError for anything else, or what cannot be exported."""
    if isinstance(program, Program):
        return program
    if isinstance(program, str):
        return Program(program, _inputs(program))
    library = type(program).__module__.partition(".")[0]
    if library == "braket" and hasattr(program, "to_ir"):
        return _from_braket(program)
    if library == "qiskit" and hasattr(program, "parameters"):
        return _from_qiskit(program)
    raise ProgramConversionError(
        f"a program is OpenQASM 3 text, a Braket Circuit or a Qiskit QuantumCircuit, not "
        f"{type(program).__module__}.{type(program).__qualname__}"
    )


def _inputs(source: str) -> tuple[str, ...]:
    """The names of ``source``'s ``input float``/``input angle`` declarations, in order."""
    found = (_INPUT.match(line.strip()) for line in source.splitlines())
    return tuple(match.group(3) for match in found if match)


def _from_braket(circuit: Any) -> Program:
    """Braket's own export (``Circuit.to_ir(IRType.OPENQASM)``: ``IRType`` is a string enum,
    so its value names it without importing Braket). Its free parameters are already
    ``input float``. Result types are refused: a job says what to return (``observables``).
    Without measure instructions, Braket adds a measurement of every qubit, which the
    platform takes only for counts and does not need for them: that is taken out."""
    if circuit.result_types:
        raise ProgramConversionError(
            "the Braket circuit has result types; give observables (or result='counts' / "
            "'probabilities') to the submission instead"
        )
    source: str = circuit.to_ir(ir_type="OPENQASM").source
    measured = any(type(i.operator).__name__ == "Measure" for i in circuit.instructions)
    if not measured:
        source = _without_added_measurements(source)
    return Program(source, _inputs(source))


def _without_added_measurements(source: str) -> str:
    """``source`` without the ``bit[n] b;`` register and the ``b[i] = measure ...;`` lines
    Braket's exporter appends to a circuit that measures nothing itself."""
    lines = source.splitlines()
    bits = next((i for i, line in enumerate(lines) if _AUTO_BITS.match(line)), None)
    if bits is None:
        return source
    count = int(_AUTO_BITS.match(lines[bits]).group(1))  # type: ignore[union-attr]
    tail = lines[len(lines) - count :] if count else []
    if len(tail) != count or not all(_AUTO_MEASURE.match(line) for line in tail):
        return source  # not the shape Braket appends: leave it as it is
    kept = lines[:bits] + lines[bits + 1 : len(lines) - count]
    return "\n".join(kept) + "\n"


def _from_qiskit(circuit: Any) -> Program:
    """Qiskit's own exporter (``qiskit.qasm3.dumps``) on the circuit translated to
    ``QISKIT_BASIS`` (``qiskit.transpile``, no optimisation, the same qubits), with no
    ``include`` and its global phase dropped (no result can show it). Parameters are exported as
    ``input float[64]``, written here as ``input float``; a name OpenQASM cannot hold is
    renamed by Qiskit, and ``names`` maps it."""
    try:
        from qiskit import qasm3, transpile
    except ImportError as exc:  # pragma: no cover - a Qiskit circuit implies Qiskit
        raise ProgramConversionError("Qiskit circuits need qiskit (pip install qiskit)") from exc
    translated = transpile(circuit, basis_gates=list(QISKIT_BASIS), optimization_level=0)
    translated.global_phase = 0
    try:
        text = qasm3.dumps(translated, includes=(), basis_gates=QISKIT_BASIS)
    except Exception as exc:  # Qiskit's exporter raises QASM3ExporterError and others
        raise ProgramConversionError(f"Qiskit cannot export the circuit: {exc}") from exc
    lines = []
    for line in text.splitlines():
        match = _INPUT.match(line.strip())
        lines.append(f"input float {match.group(3)};" if match else line)
    source = "\n".join(lines) + "\n"
    inputs = _inputs(source)
    parameters: Sequence[Any] = list(translated.parameters)  # Qiskit declares them in order
    if len(parameters) != len(inputs):
        raise ProgramConversionError(
            f"the circuit has {len(parameters)} parameters but Qiskit's export declares "
            f"{len(inputs)} inputs ({', '.join(inputs)})"
        )
    names = {p.name: name for p, name in zip(parameters, inputs, strict=True) if p.name != name}
    return Program(source, inputs, names)
