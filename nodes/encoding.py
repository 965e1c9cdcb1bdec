"""From raw samples and weights to circuit inputs: the node's half of a training step.

Pure functions, no I/O. A training fragment carries raw feature rows, the scaling the job fitted,
the weights and the weight shifts of each circuit variant (see ``Encoding`` in
``proto/qorch/v1/fragments.proto``); :func:`expand_bindings` turns them into one binding per
(sample, variant), sample-major, which the executors then run like any other fragment.
"""

from __future__ import annotations

import math

from proto.qorch.v1 import fragments_pb2 as pb

FEATURE_MAPS = ("angle", "zz", "direct")


class EncodingError(ValueError):
    """The encoding is inconsistent; running it again cannot help."""


def scaled_features(sample: pb.Sample, encoding: pb.Encoding) -> list[float]:
    """``(x - offset) * scale`` for every feature of one sample."""
    values = list(sample.values)
    if not (len(values) == len(encoding.offset) == len(encoding.scale)):
        raise EncodingError(
            f"sample has {len(values)} features; scaling has {len(encoding.offset)} offsets "
            f"and {len(encoding.scale)} scales"
        )
    scaled = [(x - o) * s for x, o, s in zip(values, encoding.offset, encoding.scale, strict=True)]
    if not all(math.isfinite(v) for v in scaled):
        raise EncodingError(f"sample {values} does not scale to finite numbers")
    return scaled


def feature_inputs(scaled: list[float], encoding: pb.Encoding) -> dict[str, float]:
    """Circuit inputs that carry one scaled sample, per the encoding's feature map."""
    kind = encoding.feature_map
    if kind == "direct":
        if len(encoding.feature_inputs) != len(scaled):
            raise EncodingError(
                f"{len(scaled)} features for {len(encoding.feature_inputs)} feature inputs"
            )
        return dict(zip(encoding.feature_inputs, scaled, strict=True))
    if kind not in FEATURE_MAPS:
        raise EncodingError(f"unknown feature map {kind!r}; expected one of {FEATURE_MAPS}")
    if not scaled or encoding.qubits < 1:
        raise EncodingError(f"feature map {kind!r} needs features and a qubit count")
    n = encoding.qubits
    angles = [scaled[q % len(scaled)] for q in range(n)]
    if kind == "angle":
        return {f"x{q}": a for q, a in enumerate(angles)}
    # zz: every angle is computed here, so the circuit's gates take bare inputs
    inputs = {f"x{q}": 2.0 * a for q, a in enumerate(angles)}
    if n > 1:
        for q in range(n):
            inputs[f"p{q}"] = 2.0 * (math.pi - angles[q]) * (math.pi - angles[(q + 1) % n])
    return inputs


def shifted_weights(encoding: pb.Encoding, shift: pb.WeightShift) -> dict[str, float]:
    """Weight inputs for one variant: the weights plus the shift's deltas."""
    weights = list(encoding.weights)
    if len(weights) != len(encoding.weight_inputs):
        raise EncodingError(
            f"{len(weights)} weights for {len(encoding.weight_inputs)} weight inputs"
        )
    if len(shift.index) != len(shift.delta):
        raise EncodingError("a weight shift needs as many deltas as indices")
    for index, delta in zip(shift.index, shift.delta, strict=True):
        if index >= len(weights):
            raise EncodingError(f"shift of weight {index}; there are {len(weights)} weights")
        weights[index] += delta
    return dict(zip(encoding.weight_inputs, weights, strict=True))


def expand_bindings(encoding: pb.Encoding) -> list[pb.Binding]:
    """One binding per (sample, variant), sample-major; no samples means one empty sample."""
    shifts = list(encoding.shifts) or [pb.WeightShift()]
    variants = [shifted_weights(encoding, shift) for shift in shifts]
    samples = (
        [feature_inputs(scaled_features(s, encoding), encoding) for s in encoding.samples]
        if encoding.samples
        else [{}]
    )
    return [
        pb.Binding(values={**features, **weights}) for features in samples for weights in variants
    ]


def apply_encoding(fragment: pb.Fragment) -> None:
    """Fill ``fragment.bindings`` from its encoding, when it has one (in place)."""
    if not fragment.HasField("encoding"):
        return
    if fragment.bindings:
        raise EncodingError("a fragment carries either bindings or an encoding, not both")
    fragment.bindings.extend(expand_bindings(fragment.encoding))
