"""Quasi-probability decompositions of a cut gate and a cut wire (pure math).

Gate cut (Mitarai and Fujii, 2021). With ``U = exp(i t ZZ) = cos t + i sin t ZZ``::

    U rho U^+ = cos^2 t rho + sin^2 t ZZ rho ZZ + cos t sin t i[ZZ, rho]
    i[A x B, rho] = sum_b b (i[A, .] x M_b) rho + sum_a a (M_a x i[B, .]) rho
    i[A, s] = R+ s R+^+ - R- s R-^+,    R+- = exp(+-i pi/4 A)

where ``M_b`` measures Z with outcome ``b = +-1``. That gives six terms, each a product of
operations on one side only; their 1-norm is ``gamma = 1 + 2|sin 2t|`` (3 for CNOT/CZ, so the
sampling overhead gamma^2 is 9, as in qiskit-addon-cutting).

Wire cut, without classical communication (Peng et al., 2020)::

    rho = 1/2 (Tr(rho) I + <X> X + <Y> Y + <Z> Z),   P = |p+><p+| - |p-><p-|,
    I = |0><0| + |1><1|

eight terms "measure P upstream, prepare an eigenstate downstream" with coefficients +-1/2:
``gamma = 4``, overhead 16, as in qiskit-addon-cutting's wire cuts without classical
communication.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray

#: What one side of a cut gate does in a term: nothing, a Z gate, R₊ = rz(-π/2),
#: R₋ = rz(π/2), or measure Z (sign of the outcome multiplies the term).
GateAction = Literal["none", "z", "r+", "r-", "measure"]
#: The distinct actions of one side, in a fixed order (one subcircuit variant each).
GATE_ACTIONS: tuple[GateAction, ...] = ("none", "z", "r+", "r-", "measure")

#: Gate-cut terms: (action on side 0, action on side 1); coefficients in gate_coefficients.
GATE_TERMS: tuple[tuple[GateAction, GateAction], ...] = (
    ("none", "none"),
    ("z", "z"),
    ("r+", "measure"),
    ("r-", "measure"),
    ("measure", "r+"),
    ("measure", "r-"),
)

#: States a cut wire's downstream half starts in.
Preparation = Literal["0", "1", "+", "-", "+i", "-i"]
PREPARATIONS: tuple[Preparation, ...] = ("0", "1", "+", "-", "+i", "-i")

#: Wire-cut terms: (Pauli measured at the upstream end, state prepared downstream, coefficient).
WIRE_TERMS: tuple[tuple[str, Preparation, float], ...] = (
    ("I", "0", 0.5),
    ("I", "1", 0.5),
    ("X", "+", 0.5),
    ("X", "-", -0.5),
    ("Y", "+i", 0.5),
    ("Y", "-i", -0.5),
    ("Z", "0", 0.5),
    ("Z", "1", -0.5),
)

WIRE_GAMMA = 4.0
WIRE_COEFFICIENTS: NDArray[np.float64] = np.array([c for _, _, c in WIRE_TERMS])


def gate_coefficients(theta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Coefficients of the six gate-cut terms, one row per angle in ``theta``."""
    c, s = np.cos(theta), np.sin(theta)
    cs = c * s
    return np.stack([c * c, s * s, cs, -cs, cs, -cs], axis=-1)


def gate_gamma(theta: float) -> float:
    """1-norm of the gate-cut coefficients at angle ``theta``."""
    return 1.0 + 2.0 * abs(math.sin(2.0 * theta))
