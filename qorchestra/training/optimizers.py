"""Optimizers whose whole state is JSON, so a step can be checkpointed and resumed exactly.

Pure, numpy. ``step(weights, gradient, state, settings)`` returns the new weights and state; the
state starts as ``{}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPTIMIZERS = ("adam", "sgd", "spsa")

State = dict[str, Any]


def sgd(
    w: np.ndarray, g: np.ndarray, state: State, lr: float, momentum: float
) -> tuple[np.ndarray, State]:
    """Gradient descent with optional (heavy-ball) momentum."""
    velocity = np.asarray(state.get("velocity", np.zeros_like(w)), dtype=float)
    velocity = momentum * velocity + g
    return w - lr * velocity, {"velocity": velocity.tolist()}


def adam(
    w: np.ndarray, g: np.ndarray, state: State, lr: float, beta1: float, beta2: float, eps: float
) -> tuple[np.ndarray, State]:
    """Adam (Kingma and Ba, 2015) with bias correction."""
    t = int(state.get("t", 0)) + 1
    m = beta1 * np.asarray(state.get("m", np.zeros_like(w)), dtype=float) + (1 - beta1) * g
    v = beta2 * np.asarray(state.get("v", np.zeros_like(w)), dtype=float) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": t, "m": m.tolist(), "v": v.tolist()}


def spsa_gains(
    k: int, a: float, c: float, stability: float, alpha: float, gamma: float
) -> tuple[float, float]:
    """Spall's gain sequences at iteration ``k`` (from 0): step ``a_k`` and perturbation ``c_k``."""
    return a / (k + 1 + stability) ** alpha, c / (k + 1) ** gamma


def spsa_step(w: np.ndarray, g: np.ndarray, state: State, a_k: float) -> tuple[np.ndarray, State]:
    """SPSA's update: a plain step with the decaying gain ``a_k``."""
    k = int(state.get("k", 0)) + 1
    return w - a_k * g, {"k": k}
