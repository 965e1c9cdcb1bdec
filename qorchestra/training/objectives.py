"""Losses and accuracies from readout expectation values (pure, numpy).

A classifier reads out ``r`` per sample: one value ``<Z_0>`` for two classes, with
``P(class 1) = (1 - <Z_0>) / 2``; or one ``<Z_c>`` per class, with ``softmax(scale * r)``.
Every function returns per-sample values and the derivative of each sample's loss with respect
to its readout, from which the gradient is assembled by the chain rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOSSES = ("bce", "cross_entropy", "mse")
_EPS = 1e-12


@dataclass(frozen=True)
class Evaluation:
    """Per-sample losses, their derivatives d loss / d readout, and class probabilities."""

    losses: np.ndarray  # (samples,)
    d_readout: np.ndarray  # (samples, observables)
    probabilities: np.ndarray  # (samples, classes)

    @property
    def loss(self) -> float:
        """Mean loss."""
        return float(self.losses.mean()) if self.losses.size else 0.0


def probabilities(readout: np.ndarray, classes: int, scale: float) -> np.ndarray:
    """Class probabilities from readouts of shape (samples, observables)."""
    if classes <= 2:
        p1 = np.clip((1.0 - readout[:, 0]) / 2.0, 0.0, 1.0)
        return np.stack([1.0 - p1, p1], axis=1)
    logits = scale * readout
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def evaluate(
    readout: np.ndarray, labels: np.ndarray, classes: int, loss: str, scale: float = 1.0
) -> Evaluation:
    """Losses of ``readout`` (samples x observables) against integer ``labels``."""
    probs = probabilities(readout, classes, scale)
    n = readout.shape[0]
    rows = np.arange(n)
    if classes <= 2:
        p1 = probs[:, 1]
        y = labels.astype(float)
        if loss in ("bce", "cross_entropy"):
            pc = np.clip(p1, _EPS, 1.0 - _EPS)
            losses = -(y * np.log(pc) + (1.0 - y) * np.log(1.0 - pc))
            d_p1 = -y / pc + (1.0 - y) / (1.0 - pc)
        elif loss == "mse":
            losses = (p1 - y) ** 2
            d_p1 = 2.0 * (p1 - y)
        else:
            raise ValueError(f"unknown loss {loss!r}")
        return Evaluation(losses, (-0.5 * d_p1)[:, None], probs)
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1.0
    if loss == "cross_entropy":
        losses = -np.log(np.clip(probs[rows, labels], _EPS, 1.0))
        d_logits = probs - onehot
    elif loss == "mse":
        losses = ((probs - onehot) ** 2).sum(axis=1)
        g = 2.0 * (probs - onehot)
        d_logits = probs * (g - (g * probs).sum(axis=1, keepdims=True))
    else:
        raise ValueError(f"loss {loss!r} does not apply to {classes} classes")
    return Evaluation(losses, scale * d_logits, probs)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose most probable class is their label."""
    if not labels.size:
        return 0.0
    return float((probs.argmax(axis=1) == labels).mean())


def energy(readout: np.ndarray, coefficients: np.ndarray) -> float:
    """``sum_k c_k <P_k>`` for one readout row (observables in the Hamiltonian's order)."""
    return float(readout @ coefficients)
