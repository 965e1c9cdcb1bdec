"""Datasets for training jobs: built-in sets, inline arrays, uploaded CSV; splits and scaling.

Pure: nothing here touches the network. Built-in sets are generated from a seed (``moons``,
``circles``) or ship with the project (``iris``), so a job never downloads anything.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

BUILTIN = ("moons", "circles", "iris")


class DataError(ValueError):
    """The data cannot be used as given; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Features (rows x features, float64), integer labels 0..classes-1, and their names."""

    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Number of samples."""
        return int(self.features.shape[0])

    def take(self, indices: list[int] | np.ndarray) -> Dataset:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=int)
        return Dataset(self.features[idx], self.labels[idx], self.feature_names, self.classes)


def moons(samples: int, noise: float, seed: int) -> Dataset:
    """Two interleaving half circles (the classic ``make_moons`` shape)."""
    rng = np.random.default_rng(seed)
    first = samples // 2
    t1 = rng.uniform(0.0, math.pi, first)
    t2 = rng.uniform(0.0, math.pi, samples - first)
    outer = np.c_[np.cos(t1), np.sin(t1)]
    inner = np.c_[1.0 - np.cos(t2), 0.5 - np.sin(t2)]
    features = np.r_[outer, inner] + rng.normal(0.0, noise, (samples, 2))
    labels = np.r_[np.zeros(first, dtype=int), np.ones(samples - first, dtype=int)]
    return Dataset(features, labels, ("x", "y"), ("0", "1"))


def circles(samples: int, noise: float, seed: int, factor: float = 0.5) -> Dataset:
    """A small circle inside a larger one (the classic ``make_circles`` shape)."""
    rng = np.random.default_rng(seed)
    first = samples // 2
    t1 = rng.uniform(0.0, 2 * math.pi, first)
    t2 = rng.uniform(0.0, 2 * math.pi, samples - first)
    outer = np.c_[np.cos(t1), np.sin(t1)]
    inner = factor * np.c_[np.cos(t2), np.sin(t2)]
    features = np.r_[outer, inner] + rng.normal(0.0, noise, (samples, 2))
    labels = np.r_[np.zeros(first, dtype=int), np.ones(samples - first, dtype=int)]
    return Dataset(features, labels, ("x", "y"), ("outer", "inner"))


def iris() -> Dataset:
    """Fisher's iris: 150 samples, 4 features, 3 classes (shipped as a CSV file)."""
    text = resources.files(__package__).joinpath("data/iris.csv").read_text()
    data = parse_csv(text, "label")
    names = ("setosa", "versicolor", "virginica")
    return Dataset(data.features, data.labels, data.feature_names, names)


def builtin(name: str, samples: int, noise: float, seed: int) -> Dataset:
    """A built-in dataset by name (``samples``/``noise`` apply to the generated ones)."""
    if name == "moons":
        return moons(samples, noise, seed)
    if name == "circles":
        return circles(samples, noise, seed)
    if name == "iris":
        return iris()
    raise DataError(f"unknown built-in dataset {name!r}; expected one of {BUILTIN}")


def from_arrays(features: list[list[float]], labels: list[int]) -> Dataset:
    """Inline data: every row the same length, finite numbers, labels 0..k-1."""
    if not features:
        raise DataError("no samples")
    if len(features) != len(labels):
        raise DataError(f"{len(features)} feature rows but {len(labels)} labels")
    width = len(features[0])
    for i, row in enumerate(features):
        if len(row) != width:
            raise DataError(f"row {i} has {len(row)} features; row 0 has {width}")
    matrix = np.asarray(features, dtype=float)
    if width == 0:
        raise DataError("samples have no features")
    if not np.all(np.isfinite(matrix)):
        raise DataError("features must be finite numbers")
    codes = np.asarray(labels, dtype=int)
    if codes.min() < 0:
        raise DataError("labels must be 0, 1, ... (class indices)")
    classes = tuple(str(c) for c in range(int(codes.max()) + 1))
    return Dataset(matrix, codes, tuple(f"f{i}" for i in range(width)), classes)


def parse_csv(text: str, label_column: str) -> Dataset:
    """A CSV with a header row; ``label_column`` holds class names or indices, the rest numbers.

    Class names are numbered in sorted order (numeric labels keep their value).
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration as exc:
        raise DataError("empty CSV") from exc
    if label_column not in header:
        raise DataError(f"no column {label_column!r}; columns are {header}")
    label_at = header.index(label_column)
    names = tuple(h for i, h in enumerate(header) if i != label_at)
    if not names:
        raise DataError("the CSV has no feature columns")
    rows: list[list[float]] = []
    raw_labels: list[str] = []
    for line, record in enumerate(reader, start=2):
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) != len(header):
            raise DataError(f"line {line}: {len(record)} values; the header has {len(header)}")
        try:
            rows.append([float(c) for i, c in enumerate(record) if i != label_at])
        except ValueError as exc:
            raise DataError(f"line {line}: {exc}") from exc
        raw_labels.append(record[label_at].strip())
    if not rows:
        raise DataError("the CSV has a header but no rows")
    matrix = np.asarray(rows, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise DataError("features must be finite numbers")
    if all(label.isdigit() for label in raw_labels):
        codes = np.asarray([int(label) for label in raw_labels])
        classes = tuple(str(c) for c in range(int(codes.max()) + 1))
    else:
        classes = tuple(sorted(set(raw_labels)))
        codes = np.asarray([classes.index(label) for label in raw_labels])
    return Dataset(matrix, codes, names, classes)


def split(rows: int, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/validation split of ``range(rows)``; the validation part may be empty."""
    order = np.random.default_rng(seed).permutation(rows)
    n_val = round(rows * validation_fraction)
    if validation_fraction > 0 and rows > 1:
        n_val = min(max(n_val, 1), rows - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


@dataclass(frozen=True)
class Scaling:
    """Per feature ``scaled = (x - offset) * scale``, fitted on the training samples."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Scaled copy of ``features`` (rows x features)."""
        return (features - np.asarray(self.offset)) * np.asarray(self.scale)

    def to_json(self) -> dict[str, list[float]]:
        """A JSON-ready form."""
        return {"offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_json(cls, value: dict[str, list[float]]) -> Scaling:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(value["offset"]), tuple(value["scale"]))


def fit_scaling(
    features: np.ndarray, method: str, low: float = 0.0, high: float = math.pi
) -> Scaling:
    """``minmax``: each feature to [low, high]; ``standard``: zero mean, unit variance; ``none``."""
    width = features.shape[1]
    if method == "none":
        return Scaling((0.0,) * width, (1.0,) * width)
    if method == "minmax":
        lo, hi = features.min(axis=0), features.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        offset = lo - low * span / (high - low)
        return Scaling(tuple(offset.tolist()), tuple(((high - low) / span).tolist()))
    if method == "standard":
        mean, std = features.mean(axis=0), features.std(axis=0)
        return Scaling(tuple(mean.tolist()), tuple((1.0 / np.where(std > 0, std, 1.0)).tolist()))
    raise DataError(f"unknown scaling {method!r}; expected minmax, standard or none")
