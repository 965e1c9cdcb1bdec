"""Signed mid-circuit measurements (a cut gate's measuring terms) on simulators that cannot run
them as they are.

A cut subexperiment that measures mid-circuit asks for values weighted by the outcomes' signs
(:mod:`qorchestra.cutting.signs`). Braket's local simulators refuse mid-circuit measurement
without shots and return no expectation values with them, so the executor runs the deferred
form: the measurement branches held on extra simulator qubits, exact with ``shots == 0``. The
fragment's ``qubits`` (what the pool's limit was checked against) stays the subcircuit's width.
"""

from __future__ import annotations

from nodes.executors.base import ExecutionError
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.cutting.signs import deferred, signed_measurements


def with_branches(fragment: pb.Fragment) -> pb.Fragment:
    """The fragment itself, or, when its program measures into ``qorch_sign``, a copy whose
    program holds those measurements' branches on extra qubits and whose observables weight
    each branch by its sign. Only expectation fragments may measure so; anything else, or
    measurements that do not match their declaration, fails the fragment for good."""
    if not signed_measurements(fragment.program):
        return fragment
    if fragment.result_kind != pb.RESULT_KIND_EXPECTATION:
        raise ExecutionError(
            "signed mid-circuit measurements need result kind expectation",
            retryable=False,
            error_type="ProgramError",
        )
    try:
        form = deferred(fragment.program, tuple(fragment.observables))
    except ValueError as exc:
        raise ExecutionError(str(exc), retryable=False, error_type="ProgramError") from exc
    copy = pb.Fragment()
    copy.CopyFrom(fragment)
    copy.program = form.source
    del copy.observables[:]
    copy.observables.extend(form.observables)
    if copy.qubits:
        copy.qubits += form.extra_qubits
    return copy
