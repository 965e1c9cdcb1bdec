"""Training curves as inline SVG polylines, drawn on the server from a job's metrics history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The value each kind of metric row plots as the loss (minimisation plots its energy).
LOSS_KEYS = ("loss", "energy", "train_loss")
#: The value a row plots as the accuracy, when it has one.
ACCURACY_KEYS = ("batch_accuracy", "train_accuracy")
WIDTH, HEIGHT, PAD = 600.0, 200.0, 10.0


@dataclass(frozen=True)
class Curve:
    """One polyline: its name, its SVG ``points`` and how many there are, and its range."""

    name: str
    points: str
    count: int
    low: float
    high: float


def _first(values: dict[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def _polyline(name: str, xs: Sequence[int], ys: Sequence[float], span: int) -> Curve:
    low, high = min(ys), max(ys)
    height = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(1, span - 1)
    points = " ".join(
        f"{PAD + x * step:.1f},{HEIGHT - PAD - (y - low) / height * (HEIGHT - 2 * PAD):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return Curve(name, points, len(ys), low, high)


def curves(history: Sequence[Any]) -> list[Curve]:
    """The loss curve, one point per row of ``history`` (a row without a loss repeats the one
    before, so the count always matches), and the accuracy curve where rows have one."""
    if not history:
        return []
    losses: list[float] = []
    accuracy_x: list[int] = []
    accuracy: list[float] = []
    for index, row in enumerate(history):
        values = row.values or {}
        loss = _first(values, LOSS_KEYS)
        losses.append(loss if loss is not None else (losses[-1] if losses else 0.0))
        found = _first(values, ACCURACY_KEYS)
        if found is not None:
            accuracy_x.append(index)
            accuracy.append(found)
    drawn = [_polyline("loss", range(len(losses)), losses, len(history))]
    if accuracy:
        drawn.append(_polyline("accuracy", accuracy_x, accuracy, len(history)))
    return drawn
