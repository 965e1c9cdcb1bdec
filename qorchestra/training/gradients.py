"""Circuit variants for a gradient, and the gradient from their readouts (pure, numpy).

Parameter shift: the forward circuit plus, for every circuit parameter, the circuit with that
parameter shifted by +pi/2 and by -pi/2; ``d<O>/d theta_k = (<O>(+) - <O>(-)) / 2`` exactly for
rotation gates. SPSA: the forward circuit and the circuits at ``w + c*delta`` and ``w - c*delta``
for a random sign vector ``delta``; ``g = (L(+) - L(-)) / (2c) * delta``. Adjoint: no extra
circuits; the node answers each sample with the forward readout and its derivative by every
circuit parameter (``nodes/executors/adjoint.py``), rows laid out like parameter shift's variants.
"""

from __future__ import annotations

import math

import numpy as np

#: A circuit variant: the indices of shifted circuit parameters and their deltas.
Shift = tuple[tuple[int, ...], tuple[float, ...]]

FORWARD: Shift = ((), ())
GRADIENTS = ("parameter_shift", "spsa", "adjoint")


def parameter_shift_variants(parameters: int) -> list[Shift]:
    """Forward, then (+pi/2, -pi/2) for each circuit parameter in order."""
    variants = [FORWARD]
    for k in range(parameters):
        variants += [((k,), (math.pi / 2,)), ((k,), (-math.pi / 2,))]
    return variants


def parameter_shift_gradient(readouts: np.ndarray, d_readout: np.ndarray) -> np.ndarray:
    """d mean-loss / d theta.

    ``readouts``: (samples, 1 + 2P, observables) in :func:`parameter_shift_variants` order;
    ``d_readout``: (samples, observables), each sample's d loss / d readout at the forward point.
    """
    derivative = (readouts[:, 1::2, :] - readouts[:, 2::2, :]) / 2.0  # (samples, P, obs)
    return np.asarray(np.einsum("so,spo->p", d_readout, derivative) / readouts.shape[0])


def adjoint_variants(parameters: int) -> list[Shift]:
    """The rows of an adjoint answer per sample: the forward readout, then the derivative by
    each circuit parameter (``((k,), ())``: parameter ``k``, no shift). They are not circuits
    and are never sent as shifts."""
    return [FORWARD] + [((k,), ()) for k in range(parameters)]


def adjoint_gradient(readouts: np.ndarray, d_readout: np.ndarray) -> np.ndarray:
    """d mean-loss / d theta from ``readouts`` (samples, 1 + P, observables) in
    :func:`adjoint_variants` order and ``d_readout`` (samples, observables)."""
    return np.asarray(np.einsum("so,spo->p", d_readout, readouts[:, 1:, :]) / readouts.shape[0])


def spsa_variants(jacobian: np.ndarray, delta: np.ndarray, c: float) -> list[Shift]:
    """Forward, ``w + c delta`` and ``w - c delta``, as shifts of the circuit parameters."""
    step = c * (jacobian @ delta)
    index = tuple(range(len(step)))
    return [FORWARD, (index, tuple(step.tolist())), (index, tuple((-step).tolist()))]


def spsa_gradient(loss_plus: float, loss_minus: float, c: float, delta: np.ndarray) -> np.ndarray:
    """SPSA's estimate of d loss / d w (``1/delta_i = delta_i`` for signs)."""
    return np.asarray((loss_plus - loss_minus) / (2.0 * c) * delta, dtype=float)
