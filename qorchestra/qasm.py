"""What the platform needs to know about an OpenQASM 3 program, read with Braket's own parser.

Pure CPU work, no I/O: used to validate jobs on submission.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

from braket.default_simulator.openqasm.interpreter import Interpreter
from braket.default_simulator.openqasm.parser.openqasm_ast import (
    AngleType,
    FloatType,
    Include,
    IntegerLiteral,
    IODeclaration,
    IOKeyword,
    QuantumMeasurementStatement,
    QubitDeclaration,
)
from braket.default_simulator.openqasm.parser.openqasm_parser import parse
from cachetools import LRUCache

# Braket's parser logs antlr noise on bad input; the error we raise carries the message.
logging.getLogger("braket.default_simulator.openqasm").setLevel(logging.CRITICAL)

_NUMERIC_INPUTS = (FloatType, AngleType)


class ProgramError(ValueError):
    """The program is not valid OpenQASM 3 that Braket can run."""


@dataclass(frozen=True)
class ProgramInfo:
    """Facts about one program."""

    inputs: tuple[str, ...]  # names of its `input` parameters, in declaration order
    qubits: int  # qubits the simulator allocates for it
    measures: bool  # whether it has explicit measurement statements


#: Programs already described (by a parse in a sandbox worker), so this process does not
#: parse them again: sha256 of the source -> ProgramInfo, the most recent KNOWN_SIZE.
KNOWN_SIZE = 4096
_known: LRUCache[str, ProgramInfo] = LRUCache(maxsize=KNOWN_SIZE)
_known_lock = threading.Lock()


def source_digest(source: str) -> str:
    """sha256 of a program's text: how caches of parse outcomes name a program."""
    return hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()


def remember(source: str, info: ProgramInfo) -> None:
    """Record what ``analyze(source)`` returns (as a parse elsewhere found), so that the next
    ``analyze(source)`` in this process answers without parsing."""
    with _known_lock:
        _known[source_digest(source)] = info


def analyze(source: str) -> ProgramInfo:
    """Parse and interpret ``source`` with Braket (inputs bound to zero) and describe it.

    Raises ProgramError with Braket's message when it cannot be run. A program ``remember``ed
    is not parsed again.
    """
    with _known_lock:
        known = _known.get(source_digest(source))
    if known is not None:
        return known
    try:
        tree = parse(source)
    except Exception as exc:  # the parser raises several unrelated types
        raise ProgramError(f"OpenQASM 3 syntax error{_position(exc)}") from exc

    inputs: list[str] = []
    declared = 0
    measures = False
    for stmt in tree.statements:
        if isinstance(stmt, IODeclaration) and stmt.io_identifier == IOKeyword.input:
            if not isinstance(stmt.type, _NUMERIC_INPUTS):
                kind = type(stmt.type).__name__
                raise ProgramError(
                    f"input '{stmt.identifier.name}' has type {kind}; only float and angle "
                    "inputs can be bound"
                )
            inputs.append(stmt.identifier.name)
        elif isinstance(stmt, QubitDeclaration):
            if stmt.size is None:
                declared += 1
            elif isinstance(stmt.size, IntegerLiteral):
                declared += stmt.size.value
            else:
                raise ProgramError(f"qubit register '{stmt.qubit.name}' needs a literal size")
        elif isinstance(stmt, QuantumMeasurementStatement):
            measures = True
        elif isinstance(stmt, Include):
            # Braket's interpreter would open the named file on this host.
            raise ProgramError(
                f"include {stmt.filename!r} is not supported: the standard gates are built in, "
                "and a program cannot name files"
            )

    try:
        circuit = Interpreter().build_circuit(source, inputs=dict.fromkeys(inputs, 0))
    except Exception as exc:  # Braket raises ValueError, IndexError, TypeError, NameError, ...
        raise ProgramError(_message(exc)) from exc
    used = max(circuit.qubit_set, default=-1) + 1
    return ProgramInfo(inputs=tuple(inputs), qubits=max(declared, used), measures=measures)


def _position(exc: BaseException) -> str:
    """' at line L, column C near 'token'' from the parser's underlying recognition error."""
    cause: BaseException | None = exc
    while cause is not None:
        for candidate in (cause, *cause.args):
            token = getattr(candidate, "offendingToken", None)
            if token is not None:
                return f" at line {token.line}, column {token.column + 1} near {token.text!r}"
        cause = cause.__cause__ or cause.__context__
    return ""


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
