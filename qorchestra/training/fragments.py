"""A step's circuits as fragments (pure): raw samples and weights go out, nodes encode them.

The bindings of a :class:`~qorchestra.training.trainer.StepRequest` are samples x variants,
sample-major. They are cut into contiguous slices of about ``per_fragment`` bindings: whole
samples with all their variants when the variants fit in one fragment, else one sample with a
slice of its variants. Each slice is one fragment whose ``binding_offset`` is its first binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.training.trainer import Setup, StepRequest


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


def slices(request: StepRequest, per_fragment: int) -> Iterator[Slice]:
    """Contiguous slices covering every binding of ``request`` once, in order."""
    samples = max(1, len(request.samples))
    variants = len(request.shifts)
    if variants >= per_fragment:
        for s in range(samples):
            for v in range(0, variants, per_fragment):
                stop = min(variants, v + per_fragment)
                yield Slice(s, s + 1, v, stop, s * variants + v)
        return
    step = max(1, per_fragment // variants)
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
        shifts=[
            pb.WeightShift(index=list(index), delta=list(delta))
            for index, delta in request.shifts[part.variant_start : part.variant_stop]
        ],
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
