"""A small quantum classifier of the two-moons data set, trained with PennyLane's Adam optimizer
through the ``qorchestra.qubit`` device (docs/pennylane.md).

    qorch up                                   # in another shell; it prints QORCH_API_KEY
    export QORCH_API_KEY=...
    python examples/pennylane_moons.py --steps 30
    python examples/pennylane_moons.py --device default.qubit   # the same, on your machine

Each step evaluates a mini-batch at once (parameter broadcasting): the forward pass is one
circuits job, and its parameter-shift gradient another, whose shifted circuits share one program
and fan out over the pool's agents.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pennylane as qml
from pennylane import numpy as pnp

QUBITS = 2


def moons(samples: int, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, scaled to angles in [0, pi]: features ``(samples, 2)`` and
    labels 0 and 1."""
    rng = np.random.default_rng(seed)
    upper = samples // 2
    t = np.pi * rng.random(samples)
    x = np.where(np.arange(samples) < upper, np.cos(t), 1 - np.cos(t))
    y = np.where(np.arange(samples) < upper, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((samples, 2))
    lo, hi = points.min(axis=0), points.max(axis=0)
    labels = (np.arange(samples) >= upper).astype(float)
    return np.pi * (points - lo) / (hi - lo), labels


def classifier(device: Any, layers: int, shots: int | None = None) -> Callable[[Any, Any], Any]:
    """``f(weights, x)``: the probability of class 1 for each row of ``x``, from a circuit that
    uploads the features before every layer of trainable rotations and entanglers."""

    @qml.set_shots(shots=shots)
    @qml.qnode(device, diff_method="parameter-shift")
    def circuit(weights: Any, x: Any) -> Any:
        for layer in range(layers):
            qml.AngleEmbedding(x, wires=range(QUBITS), rotation="Y")
            qml.StronglyEntanglingLayers(weights[layer : layer + 1], wires=range(QUBITS))
        return qml.expval(qml.Z(0))

    return lambda weights, x: (1 - circuit(weights, x)) / 2


@dataclass
class Training:
    """What training did: the weights after each step, and each step's loss and gradient."""

    weights: list[np.ndarray] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    gradients: list[np.ndarray] = field(default_factory=list)


def train(
    device: Any,
    steps: int = 30,
    batch: int = 16,
    layers: int = 3,
    learning_rate: float = 0.1,
    seed: int = 0,
    shots: int | None = None,
) -> Training:
    """Adam on the binary cross-entropy of mini-batches drawn with ``seed``; ``shots`` None:
    exact expectation values."""
    features, labels = moons(200, seed=seed)
    rng = np.random.default_rng(seed)
    weights = pnp.array(rng.uniform(0, 2 * np.pi, (layers, QUBITS, 3)), requires_grad=True)
    predict = classifier(device, layers, shots)
    optimizer = qml.AdamOptimizer(learning_rate)
    training = Training()
    for _ in range(steps):
        rows = rng.choice(len(features), batch, replace=False)
        x = pnp.array(features[rows], requires_grad=False)
        y = labels[rows]

        def loss(w: Any, x: Any = x, y: np.ndarray = y) -> Any:
            p = pnp.clip(predict(w, x), 1e-6, 1 - 1e-6)
            return -pnp.mean(y * pnp.log(p) + (1 - y) * pnp.log(1 - p))

        (gradient,), value = optimizer.compute_grad(loss, (weights,), {})
        weights = optimizer.apply_grad(gradient, (weights,))[0]
        training.losses.append(float(value))
        training.gradients.append(np.array(gradient))
        training.weights.append(np.array(weights))
    return training


def accuracy(device: Any, weights: np.ndarray, seed: int = 1) -> float:
    """The share of a fresh moons sample classified right."""
    features, labels = moons(100, seed=seed)
    predictions = classifier(device, len(weights))(weights, features)
    return float(np.mean((np.asarray(predictions) > 0.5) == labels))


def main(argv: Sequence[str] | None = None) -> int:
    """Train and report the loss every few steps and the accuracy at the end."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="qorchestra.qubit")
    parser.add_argument("--pool", default="local-sv", help="the qorchestra pool")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--shots", type=int, default=None, help="default: exact results")
    args = parser.parse_args(argv)
    options = {"pool": args.pool} if args.device == "qorchestra.qubit" else {}
    device = qml.device(args.device, wires=QUBITS, **options)
    run = train(device, steps=args.steps, shots=args.shots)
    for step, loss in enumerate(run.losses, 1):
        if step % 5 == 0 or step == len(run.losses):
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"accuracy {accuracy(device, run.weights[-1]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
