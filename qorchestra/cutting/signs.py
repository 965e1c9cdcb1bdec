"""Signed mid-circuit measurements: how a cut gate's measuring term travels, and how a simulator
evaluates it exactly (pure text, no I/O, no Braket).

A subexperiment in which a cut gate's side measures declares ``bit[m] qorch_sign;`` after its
qubits and writes ``qorch_sign[k] = measure q[i];`` where the gate was. Its expectation values
are, by convention, weighted by the product of the ±1 outcomes of those measurements::

    value(O) = E[(-1)^(qorch_sign[0] + ... + qorch_sign[m-1]) · O]

which is what the quasi-probability decomposition needs (:mod:`qorchestra.cutting.qpd`). The
subcircuit's width does not grow: a device that measures mid-circuit runs it as it is.

A simulator that cannot (Braket's local simulator refuses mid-circuit measurement without
shots, and returns no expectation values with them) runs :func:`deferred` instead: each
measurement becomes a CNOT onto a fresh qubit of a ``qorch_sign`` register, and ``Z`` on those
qubits is appended to every observable. By the principle of deferred measurement this is the
same quantity: the extra register holds the measurement branches, and its ``Z`` weights each
branch by its sign. It is exact with ``shots == 0`` and samples the same estimator with shots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The bit register a subexperiment's signed measurements write to.
SIGN_REGISTER = "qorch_sign"

_DECLARATION = re.compile(rf"^[ \t]*bit\[(\d+)\][ \t]+{SIGN_REGISTER}[ \t]*;[ \t]*$", re.M)
_MEASURE = re.compile(
    rf"^[ \t]*{SIGN_REGISTER}\[(\d+)\][ \t]*=[ \t]*measure[ \t]+(\w+\[\d+\])[ \t]*;[ \t]*$", re.M
)


def declaration(count: int) -> str:
    """The line that declares ``count`` signed measurements (after the qubits)."""
    return f"bit[{count}] {SIGN_REGISTER};"


def measurement(bit: int, qubit: str) -> str:
    """The line that measures ``qubit`` (an OpenQASM reference such as ``q[2]``) into sign
    bit ``bit``."""
    return f"{SIGN_REGISTER}[{bit}] = measure {qubit};"


@dataclass(frozen=True)
class Deferred:
    """A program with its signed measurements deferred onto extra qubits."""

    source: str
    observables: tuple[str, ...]
    extra_qubits: int


def signed_measurements(source: str) -> int:
    """How many signed measurements ``source`` declares (0: none, run it as it is)."""
    found = _DECLARATION.search(source)
    return int(found.group(1)) if found else 0


def deferred(source: str, observables: tuple[str, ...]) -> Deferred:
    """``source`` with every ``qorch_sign[k] = measure q[i];`` turned into ``cnot q[i],
    qorch_sign[k];`` on a ``qubit[m] qorch_sign;`` register, and ``Z`` on that register appended
    to every observable (so no observable is all identity: the sign's mean is not 1).

    Raises ValueError when the measurements do not match the declaration: each bit of the
    register must be written exactly once.
    """
    count = signed_measurements(source)
    bits = [int(m.group(1)) for m in _MEASURE.finditer(source)]
    if sorted(bits) != list(range(count)):
        raise ValueError(
            f"{SIGN_REGISTER} declares {count} bits but the program measures into {sorted(bits)}"
        )
    text = _DECLARATION.sub(f"qubit[{count}] {SIGN_REGISTER};", source, count=1)
    text = _MEASURE.sub(lambda m: f"cnot {m.group(2)}, {SIGN_REGISTER}[{m.group(1)}];", text)
    return Deferred(text, tuple(o + "Z" * count for o in observables), count)
