"""A step's circuits as fragments (pure): raw samples and weights go out, nodes encode them.

The bindings of a :class:`~qorchestra.training.trainer.StepRequest` are samples x variants,
sample-major. They are cut into contiguous slices of about ``per_fragment`` bindings: whole
samples with all their variants when the variants fit in one fragment, else one sample with a
slice of its variants. Each slice is one fragment whose ``binding_offset`` is its first binding.
An adjoint request's "variants" are the rows of each sample's answer (its readout and one
derivative per parameter), computed together on the node: its slices are whole samples, each
counted as :data:`ADJOINT_SAMPLE_COST` bindings of ``per_fragment``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.training.trainer import Setup, StepRequest

#: How many times ``per_fragment`` bindings of whole samples a *batched* step (exact, on pool
#: local-sv) packs into one fragment: its agents run all of a training fragment's bindings as
#: one vectorised batch (``nodes/executors/adjoint.py``), where a small circuit's binding costs
#: microseconds instead of milliseconds, so per-fragment costs (Kafka, one transaction per
#: result) dominate. A sample whose variants alone reach ``per_fragment`` is still cut as usual.
BATCHED_FRAGMENT_FACTOR = 8

#: The bindings of ``per_fragment`` one adjoint sample counts as: its forward pass, its backward
#: pass (the state and one vector per observable) and the readout cost about that many circuits.
ADJOINT_SAMPLE_COST = 4


@dataclass(frozen=True)
class Slice:
    """Samples ``[sample_start, sample_stop)`` x variants ``[variant_start, variant_stop)``."""

    sample_start: int
    sample_stop: int
    variant_start: int
    variant_stop: int
    offset: int  # index of the first binding in the request's order

    @property
    def bindings(self) -> int:
        """Bindings in the slice."""
        return (self.sample_stop - self.sample_start) * (self.variant_stop - self.variant_start)


def batched(pool: str, shots: int) -> bool:
    """Whether a step's agents run each fragment as one vectorised batch: exact, on local-sv."""
    return pool == "local-sv" and not shots


def slices(request: StepRequest, per_fragment: int, batch: bool = False) -> Iterator[Slice]:
    """Contiguous slices covering every binding of ``request`` once, in order; with ``batch``
    (:func:`batched`), whole samples are packed :data:`BATCHED_FRAGMENT_FACTOR` times fuller."""
    samples = max(1, len(request.samples))
    variants = len(request.shifts)
    pack = per_fragment * (BATCHED_FRAGMENT_FACTOR if batch else 1)
    if request.gradient == "adjoint":
        step = max(1, pack // ADJOINT_SAMPLE_COST)
        for s in range(0, samples, step):
            yield Slice(s, min(samples, s + step), 0, variants, s * variants)
        return
    if variants >= per_fragment:
        for s in range(samples):
            for v in range(0, variants, per_fragment):
                stop = min(variants, v + per_fragment)
                yield Slice(s, s + 1, v, stop, s * variants + v)
        return
    step = max(1, pack // variants)
    for s in range(0, samples, step):
        stop = min(samples, s + step)
        yield Slice(s, stop, 0, variants, s * variants)


def encoding(setup: Setup, request: StepRequest, part: Slice) -> pb.Encoding:
    """The Encoding message of one slice."""
    model = setup.model
    message = pb.Encoding(
        feature_map=model.feature_map,
        qubits=model.qubits,
        feature_inputs=list(model.feature_inputs),
        weight_inputs=list(model.weight_inputs),
        weights=list(request.theta),
    )
    if request.gradient == "adjoint":  # one binding per sample; the node adds the derivatives
        message.gradient = pb.GRADIENT_ADJOINT
    else:
        message.shifts.extend(
            pb.WeightShift(index=list(index), delta=list(delta))
            for index, delta in request.shifts[part.variant_start : part.variant_stop]
        )
    if request.samples:
        assert setup.scaling is not None
        message.offset.extend(setup.scaling.offset)
        message.scale.extend(setup.scaling.scale)
        rows = setup.features(request.samples[part.sample_start : part.sample_stop])
        message.samples.extend(pb.Sample(values=row) for row in rows)
    return message


def build_fragment(
    setup: Setup,
    request: StepRequest,
    part: Slice,
    *,
    job_id: str,
    fragment_id: str,
    pool: str,
    shots: int,
    attempt: int = 1,
    step: int = 0,
) -> pb.Fragment:
    """The Kafka message of one slice of a step."""
    dispatched = Timestamp()
    dispatched.GetCurrentTime()
    return pb.Fragment(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=attempt,
        pool=pool,
        program_index=step,
        program=setup.model.source,
        binding_offset=part.offset,
        shots=shots,
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=list(setup.observables),
        qubits=setup.model.qubits,
        dispatched_at=dispatched,
        encoding=encoding(setup, request, part),
    )
