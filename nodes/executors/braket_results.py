"""Braket's result documents, read the way the Braket SDK reads them, through a given reader.

A task writes ``results.json`` to ``s3://<outputS3Bucket>/<outputS3Directory>/``. For a single
program it is a gate-model result. For a program set it lists, per program, the results of its
executables: inline, or as S3 keys relative to the document's ``s3Location`` (a program's
executables relative to the folder of that program's own ``results.json``). The reader is a
function ``(bucket, key) -> text`` so the agent's own S3 client (and its endpoint and
credentials) fetches every file; the SDK's reader would use a default client instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from braket.schema_common import BraketSchemaBase
from braket.task_result import (
    GateModelTaskResult,
    ProgramResult,
    ProgramSetExecutableFailure,
    ProgramSetExecutableResult,
    ProgramSetTaskMetadata,
    ProgramSetTaskResult,
)
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import ExecutionError
from nodes.executors.sampled import Outcome

#: ``(bucket, key) -> the object's text``.
Reader = Callable[[str, str], str]

RESULTS_FILE = "results.json"

T = TypeVar("T")


def parse_result(text: str) -> GateModelQuantumTaskResult | ProgramSetTaskResult:
    """A results document: a gate-model result ready to read, or a program set's document."""
    document = BraketSchemaBase.parse_raw_schema(text)
    if isinstance(document, GateModelTaskResult):
        GateModelQuantumTaskResult.cast_result_types(document)
        return GateModelQuantumTaskResult.from_object(document)
    if isinstance(document, ProgramSetTaskResult):
        return document
    raise ExecutionError(
        f"unexpected Braket result {type(document).__name__}",
        retryable=False,
        error_type="UnexpectedResult",
    )


def program_set_outcomes(
    document: ProgramSetTaskResult, read: Reader, task: str = ""
) -> list[list[Outcome]]:
    """Per program of the set, what each executable measured, in the order of its inputs.

    A failed executable raises :class:`ExecutionError`, retryable as Braket says it is.
    """
    bucket, prefix = document.s3Location or ("", "")
    shots = _shots_per_executable(document, read, bucket, prefix)
    outcomes = []
    for p, entry in enumerate(document.programResults):
        if isinstance(entry, str):
            key = f"{prefix}/{entry}"
            program = _parse(read(bucket, key), ProgramResult)
            folder = key.removesuffix(f"/{RESULTS_FILE}")
        else:
            program, folder = entry, ""
        executables = [
            _parse(read(bucket, f"{folder}/{e}"), ProgramSetExecutableResult)
            if isinstance(e, str)
            else e
            for e in program.executableResults
        ]
        outcomes.append(_outcomes(executables, shots, p, task))
    return outcomes


def _outcomes(
    executables: Sequence[ProgramSetExecutableResult | ProgramSetExecutableFailure],
    shots: int,
    program: int,
    task: str,
) -> list[Outcome]:
    ordered = sorted(executables, key=lambda e: e.inputsIndex)
    if [e.inputsIndex for e in ordered] != list(range(len(ordered))):
        raise ExecutionError(
            f"Braket task {task}: program {program} has results for inputs "
            f"{[e.inputsIndex for e in ordered]}",
            retryable=False,
            error_type="UnexpectedResult",
        )
    outcomes = []
    for executable in ordered:
        if isinstance(executable, ProgramSetExecutableFailure):
            failure = executable.failureMetadata
            raise ExecutionError(
                f"Braket task {task}: program {program}, inputs {executable.inputsIndex} "
                f"failed ({failure.category.value}): {failure.failureReason}",
                retryable=failure.retryable,
                error_type="ExecutableFailed",
            )
        outcomes.append(outcome(executable, shots))
    return outcomes


def outcome(executable: ProgramSetExecutableResult, shots: int) -> Outcome:
    """One executable's measurements (or probabilities) as an :class:`Outcome`."""
    measured = tuple(executable.measuredQubits) if executable.measuredQubits else None
    if executable.measurements:
        counts = Counter("".join(str(bit) for bit in shot) for shot in executable.measurements)
        return Outcome(counts=dict(counts), measured_qubits=measured)
    if executable.measurementProbabilities:
        probabilities = dict(executable.measurementProbabilities)
        # As the SDK turns probabilities into counts: each rounded on its own.
        counts_from_p = {b: round(p * shots) for b, p in probabilities.items()}
        return Outcome(
            counts={b: n for b, n in counts_from_p.items() if n},
            measured_qubits=measured,
            probabilities=probabilities,
        )
    raise ExecutionError(
        "a program-set executable has neither measurements nor probabilities",
        retryable=False,
        error_type="UnexpectedResult",
    )


def _shots_per_executable(
    document: ProgramSetTaskResult, read: Reader, bucket: str, prefix: str
) -> int:
    metadata = document.taskMetadata
    if isinstance(metadata, str):
        metadata = _parse(read(bucket, f"{prefix}/{metadata}"), ProgramSetTaskMetadata)
    executables = sum(len(p.executables) for p in metadata.programMetadata)
    return metadata.requestedShots // max(1, executables)


def _parse(text: str, kind: type[T]) -> T:
    document = BraketSchemaBase.parse_raw_schema(text)
    if not isinstance(document, kind):
        raise ExecutionError(
            f"expected a Braket {kind.__name__}, got {type(document).__name__}",
            retryable=False,
            error_type="UnexpectedResult",
        )
    return document
