"""A fragment's quantum tasks as CreateQuantumTask requests, and each one's client token. Pure.

:func:`plan_submission` sends a fragment's bindings as program sets where the device and the
fragment allow (:func:`qorchestra.program_sets.plan_tasks` cuts them into chunks within the
device's limits, :mod:`nodes.executors.sampled` makes each run a measured program), and as one
task per binding and run otherwise. Every request records which binding and run each of its
executables answers, so results map back exactly.

:func:`client_token` derives each request's ``clientToken`` from the fragment id, a generation,
the task's index in the fragment and a digest of the request. Braket's API marks
``clientToken`` as the request's idempotency token, so the same token names the task already
created instead of a second one. The generation is 1 for the first task of an index, whatever
the fragment's attempt: every delivery of the fragment, redelivered or dispatched again, sends
the same tokens, and two that run at once (a straggler and its re-dispatch) share one task. Only
the replacement of a task that cannot serve (it was cancelled) takes the next generation. A
request whose content changed (the digest) gets a new token, so a token never names a task
that computed something else.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from braket.ir.openqasm import Program, ProgramSet

from nodes.executors.sampled import SampledRun, sampled_runs
from nodes.program import PreparedProgram
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.program_sets import ProgramSetLimits, TaskPlan, plan_tasks

#: Namespace of the client tokens (UUID 5 of the fragment, generation, task index and digest).
TOKEN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "qorchestra:braket:client-token")


@dataclass(frozen=True)
class Entry:
    """One program of a task: the fragment run it is, and the binding of each executable."""

    run: int
    bindings: tuple[int, ...]


@dataclass(frozen=True)
class TaskRequest:
    """One quantum task: its ``action`` (OpenQASM program or program set, as JSON), its
    ``shots`` (all executables together for a program set), and its programs."""

    action: str
    shots: int
    program_set: bool
    entries: tuple[Entry, ...]

    def create_arguments(
        self, device_arn: str, bucket: str, prefix: str, *, reservation_arn: str | None = None
    ) -> dict[str, Any]:
        """CreateQuantumTask's arguments, but the client token; with ``reservation_arn``, the
        task runs in that Braket reservation (as ``AwsDevice.run(..., reservation_arn=)``
        asks). The reservation is part of the request, so of its client token's digest: a
        token never names a task made in another reservation."""
        arguments: dict[str, Any] = {
            "deviceArn": device_arn,
            "outputS3Bucket": bucket,
            "outputS3KeyPrefix": prefix,
            "shots": self.shots,
            "action": self.action,
        }
        if reservation_arn:
            arguments["associations"] = [
                {"arn": reservation_arn, "type": "RESERVATION_TIME_WINDOW_ARN"}
            ]
        return arguments


@dataclass(frozen=True)
class Submission:
    """Every task of a fragment of ``bindings`` bindings: ``plan`` (the chunks), the
    ``requests`` in order, and the ``sampled`` programs that read program-set results (None
    without program sets)."""

    plan: TaskPlan
    requests: tuple[TaskRequest, ...]
    sampled: tuple[SampledRun, ...] | None
    bindings: int
    runs_per_binding: int

    def slot(self, binding: int, run: int) -> int:
        """Where the result of ``run`` of ``binding`` goes among the fragment's task results
        (binding-major, as :meth:`nodes.program.PreparedProgram.binding_results` reads)."""
        return binding * self.runs_per_binding + run


def plan_submission(
    fragment: pb.Fragment,
    prepared: PreparedProgram,
    inputs: Sequence[Mapping[str, float]],
    limits: ProgramSetLimits | None,
) -> Submission:
    """The tasks of ``fragment`` (``inputs``: each binding's values) on a device with program
    set ``limits`` (None: the device has none)."""
    runs = len(prepared.runs)
    sampled = sampled_runs(fragment, prepared) if limits is not None else None
    same_names = len({frozenset(values) for values in inputs}) <= 1
    usable = limits if sampled is not None and same_names else None
    plan = plan_tasks(len(inputs), fragment.shots, usable, runs)
    if not plan.program_sets or sampled is None:
        requests = tuple(
            TaskRequest(
                action=Program(source=prepared.runs[r].source, inputs=dict(inputs[b])).json(),
                shots=fragment.shots,
                program_set=False,
                entries=(Entry(r, (b,)),),
            )
            for chunk in plan.chunks
            for b in chunk
            for r in range(runs)
        )
        return Submission(plan, requests, None, len(inputs), runs)
    requests = tuple(_program_set(sampled, chunk, inputs, fragment.shots) for chunk in plan.chunks)
    return Submission(plan, requests, sampled, len(inputs), runs)


def _program_set(
    sampled: Sequence[SampledRun],
    chunk: range,
    inputs: Sequence[Mapping[str, float]],
    shots: int,
) -> TaskRequest:
    """One program-set task for the bindings of ``chunk``: one program per run with the
    bindings' values as input lists, or, for a program without inputs, one per binding and
    run."""
    names = sorted(inputs[chunk.start]) if len(chunk) else []
    programs: list[Program] = []
    entries: list[Entry] = []
    if names:
        for r, run in enumerate(sampled):
            values = {n: [inputs[b][n] for b in chunk] for n in names}
            programs.append(Program(source=run.source, inputs=values))
            entries.append(Entry(r, tuple(chunk)))
    else:
        for b in chunk:
            for r, run in enumerate(sampled):
                programs.append(Program(source=run.source))
                entries.append(Entry(r, (b,)))
    executables = sum(len(e.bindings) for e in entries)
    return TaskRequest(
        action=ProgramSet(programs=programs).json(),
        shots=shots * executables,
        program_set=True,
        entries=tuple(entries),
    )


def client_token(fragment_id: str, generation: int, index: int, request: Mapping[str, Any]) -> str:
    """The ``clientToken`` of task ``index`` of a fragment, in its ``generation`` (1 for the
    first task of the index): a UUID (36 characters; Braket takes 1 to 64), the same for the
    same fragment, generation, index and request (CreateQuantumTask's other arguments)."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{fragment_id}\n{generation}\n{index}\n{digest}"))
