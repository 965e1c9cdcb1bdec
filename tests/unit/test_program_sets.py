"""Planning a fragment's Braket tasks, with no I/O: program-set chunks, client tokens, measured
programs, and reading program-set results through a reader."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from braket.task_result import (
    AdditionalMetadata,
    ProgramResult,
    ProgramSetExecutableFailure,
    ProgramSetExecutableResult,
    ProgramSetTaskMetadata,
    ProgramSetTaskResult,
)
from braket.task_result.program_set_executable_failure_v1 import (
    FailureCategory,
    ProgramSetExecutableFailureMetadata,
)
from braket.task_result.program_set_executable_result_v1 import (
    ProgramSetExecutableResultMetadata,
)
from braket.task_result.program_set_task_metadata_v1 import ProgramMetadata

from nodes.executors.aws import submission_usage
from nodes.executors.base import ExecutionError, Used
from nodes.executors.braket_results import program_set_outcomes
from nodes.executors.sampled import MEASURED_BITS, Outcome, SampledRun, sampled_runs
from nodes.executors.submission import client_token, plan_submission
from nodes.program import prepare_fragment
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.program_sets import ProgramSetLimits, plan_tasks, task_count

#: The local simulator's program-set limits.
LIMITS = ProgramSetLimits(max_executables=100, max_total_shots=200_000)

PROGRAM = """OPENQASM 3.0;
input float a;
qubit[2] q;
ry(a) q[0];
cnot q[0], q[1];
"""


def fragment(
    kind: int, observables: list[str] | None = None, shots: int = 100, bindings: int = 3
) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f-1",
        job_id="j-1",
        attempt=1,
        program=PROGRAM,
        bindings=[pb.Binding(values={"a": 0.1 * i}) for i in range(bindings)],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=observables or [],
        qubits=2,
    )


def test_64_bindings_are_one_task_and_250_are_three() -> None:
    assert task_count(64, 100, LIMITS) == 1
    assert task_count(250, 100, LIMITS) == 3
    plan = plan_tasks(250, 100, LIMITS)
    assert plan.program_sets
    assert [len(c) for c in plan.chunks] == [84, 83, 83]


@pytest.mark.parametrize(
    ("bindings", "shots", "limits", "runs", "tasks"),
    [
        (64, 100, None, 1, 64),  # no program sets: a task per binding
        (64, 100, None, 2, 128),  # ... and per run
        (64, 0, LIMITS, 1, 64),  # exact runs cannot go in a program set
        (64, 100, LIMITS, 2, 2),  # two runs per binding: 128 executables
        (250, 1000, LIMITS, 1, 3),  # 100 executables x 1000 shots fit 200,000
        (250, 5000, LIMITS, 1, 7),  # the shots limit: 40 bindings a task
        (3, 300_000, LIMITS, 1, 3),  # not one binding fits: a task each
        (0, 100, LIMITS, 1, 0),
        (3, 10, ProgramSetLimits(100, 200_000, min_total_shots=100), 1, 3),  # below the minimum
        (20, 10, ProgramSetLimits(100, 200_000, min_total_shots=100), 1, 1),
    ],
)
def test_task_counts(
    bindings: int, shots: int, limits: ProgramSetLimits | None, runs: int, tasks: int
) -> None:
    assert task_count(bindings, shots, limits, runs) == tasks


@pytest.mark.parametrize("bindings", [1, 7, 99, 100, 101, 250, 1000])
@pytest.mark.parametrize("max_executables", [1, 3, 100])
def test_chunks_cover_every_binding_once_in_order_within_the_limit(
    bindings: int, max_executables: int
) -> None:
    limits = ProgramSetLimits(max_executables, 10**9)
    plan = plan_tasks(bindings, 10, limits, runs_per_binding=1)
    covered = [b for chunk in plan.chunks for b in chunk]
    assert covered == list(range(bindings))
    assert all(1 <= len(c) <= max_executables for c in plan.chunks)
    assert len(plan.chunks) == -(-bindings // max_executables)  # as few as the limit allows
    sizes = {len(c) for c in plan.chunks}
    assert max(sizes) - min(sizes) <= 1  # near-equal


def test_plans_refuse_negative_sizes() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        plan_tasks(-1, 10, LIMITS)


def test_client_tokens_are_stable_uuids_that_differ_by_attempt_index_and_request() -> None:
    request = {"deviceArn": "arn", "shots": 100, "action": "{}"}
    token = client_token("f-1", 1, 0, request)
    assert token == client_token("f-1", 1, 0, dict(reversed(list(request.items()))))
    assert uuid.UUID(token).version == 5 and 1 <= len(token) <= 64
    others = {
        client_token("f-2", 1, 0, request),
        client_token("f-1", 2, 0, request),
        client_token("f-1", 1, 1, request),
        client_token("f-1", 1, 0, {**request, "shots": 200}),
    }
    assert token not in others and len(others) == 4


def test_a_program_set_request_carries_each_bindings_values_as_input_lists() -> None:
    frag = fragment(pb.RESULT_KIND_COUNTS, bindings=5)
    inputs = [dict(b.values) for b in frag.bindings]
    submission = plan_submission(frag, prepare_fragment(frag), inputs, LIMITS)

    (request,) = submission.requests
    action = json.loads(request.action)
    assert action["braketSchemaHeader"]["name"] == "braket.ir.openqasm.program_set"
    assert action["programs"][0]["inputs"] == {"a": [v["a"] for v in inputs]}
    assert request.shots == 5 * 100  # every executable's shots together
    assert [e.bindings for e in request.entries] == [(0, 1, 2, 3, 4)]
    assert submission_usage(submission, frag.shots) == Used(tasks=1, shots=500)  # as reported


def test_without_program_sets_each_binding_and_run_is_a_program() -> None:
    frag = fragment(pb.RESULT_KIND_EXPECTATION, ["ZI", "XI"], bindings=2)
    inputs = [dict(b.values) for b in frag.bindings]
    submission = plan_submission(frag, prepare_fragment(frag), inputs, None)

    assert [(r.entries[0].bindings, r.entries[0].run) for r in submission.requests] == [
        ((0,), 0),
        ((0,), 1),
        ((1,), 0),
        ((1,), 1),
    ]
    assert all(not r.program_set and r.shots == 100 for r in submission.requests)
    assert submission_usage(submission, frag.shots) == Used(tasks=4, shots=400)  # as reported
    assert (
        "#pragma braket result expectation" in json.loads(submission.requests[0].action)["source"]
    )


def test_expectations_become_a_basis_change_and_measurements() -> None:
    frag = fragment(pb.RESULT_KIND_EXPECTATION, ["ZZ", "XI", "IY", "II"])
    runs = sampled_runs(frag, prepare_fragment(frag))

    assert runs is not None
    sources = [r.source for r in runs]
    assert all("#pragma braket result" not in s for s in sources)
    assert all(s.endswith(f"{MEASURED_BITS}[1] = measure q[1];\n") for s in sources)
    assert [r.paulis for r in runs] == [("ZZ",), ("XI", "IY")]  # II is the constant 1
    second = sources[1]
    assert "h q[0];\nsi q[1];\nh q[1];\n" in second


@pytest.mark.parametrize(
    ("program", "shots"),
    [
        (PROGRAM, 0),  # exact
        (PROGRAM + "bit[2] c;\nc = measure q;\n", 100),  # measures by itself
        (PROGRAM + f"bit {MEASURED_BITS};\n", 100),  # names the register
    ],
)
def test_fragments_that_cannot_be_measured_run_as_single_tasks(program: str, shots: int) -> None:
    frag = fragment(pb.RESULT_KIND_PROBABILITIES, shots=shots)
    frag.program = program
    assert sampled_runs(frag, prepare_fragment(frag)) is None
    inputs = [dict(b.values) for b in frag.bindings]
    assert not plan_submission(frag, prepare_fragment(frag), inputs, LIMITS).plan.program_sets


def test_measured_qubits_map_bits_to_qubits() -> None:
    run = SampledRun(source="", kind=pb.RESULT_KIND_EXPECTATION, qubits=2, paulis=("ZI", "IZ"))
    # bit strings list qubit 1 first: "10" is qubit 1 = 1, qubit 0 = 0
    outcome = Outcome(counts={"10": 3, "00": 1}, measured_qubits=(1, 0))
    assert run.result(outcome).values == (1.0, -0.5)

    probabilities = SampledRun(source="", kind=pb.RESULT_KIND_PROBABILITIES, qubits=2)
    assert probabilities.result(outcome).values == ([0.25, 0.75, 0.0, 0.0],)


def _metadata(executables: list[int]) -> ProgramSetTaskMetadata:
    return ProgramSetTaskMetadata(
        id="task",
        deviceId="device",
        requestedShots=4 * sum(executables),
        successfulShots=4 * sum(executables),
        programMetadata=[
            ProgramMetadata(executables=[ProgramSetExecutableResultMetadata()] * n)
            for n in executables
        ],
        totalFailedExecutables=0,
    )


def test_program_set_results_are_read_by_relative_key_and_ordered_by_inputs() -> None:
    executables = [
        ProgramSetExecutableResult(inputsIndex=1, measurements=[[1]] * 4, measuredQubits=[0]),
        ProgramSetExecutableResult(inputsIndex=0, measurements=[[0]] * 4, measuredQubits=[0]),
    ]
    files = {
        ("b", "out/t/programs/0/e1.json"): executables[0].json(),
        ("b", "out/t/programs/0/e0.json"): executables[1].json(),
        ("b", "out/t/programs/0/results.json"): ProgramResult(
            executableResults=["e1.json", "e0.json"],
            source="OPENQASM 3.0;",
            additionalMetadata=AdditionalMetadata(),
        ).json(),
        ("b", "out/t/metadata.json"): _metadata([2]).json(),
    }
    document = ProgramSetTaskResult(
        programResults=["programs/0/results.json"],
        taskMetadata="metadata.json",
        s3Location=("b", "out/t"),
    )

    (outcomes,) = program_set_outcomes(document, lambda b, k: files[(b, k)])
    assert [o.counts for o in outcomes] == [{"0": 4}, {"1": 4}]


def test_a_failed_executable_fails_the_fragment_as_braket_says() -> None:
    failure = ProgramSetExecutableFailure(
        inputsIndex=0,
        failureMetadata=ProgramSetExecutableFailureMetadata(
            failureReason="device calibration", retryable=True, category=FailureCategory.DEVICE
        ),
    )
    document = ProgramSetTaskResult(
        programResults=[
            ProgramResult(
                executableResults=[failure],
                source="OPENQASM 3.0;",
                additionalMetadata=AdditionalMetadata(),
            )
        ],
        taskMetadata=_metadata([1]),
        s3Location=None,
    )
    with pytest.raises(ExecutionError, match="device calibration") as info:
        program_set_outcomes(document, lambda b, k: "", "arn:task")
    assert info.value.retryable is True
    assert info.value.error_type == "ExecutableFailed"


def test_probabilities_a_device_reports_are_read_as_they_are() -> None:
    executable = ProgramSetExecutableResult(
        inputsIndex=0, measurementProbabilities={"0": 0.25, "1": 0.75}, measuredQubits=[0]
    )
    document = ProgramSetTaskResult(
        programResults=[
            ProgramResult(
                executableResults=[executable],
                source="OPENQASM 3.0;",
                additionalMetadata=AdditionalMetadata(),
            )
        ],
        taskMetadata=_metadata([1]),
        s3Location=None,
    )
    ((outcome,),) = program_set_outcomes(document, lambda b, k: "")
    assert outcome.counts == {"0": 1, "1": 3}
    run = SampledRun(source="", kind=pb.RESULT_KIND_EXPECTATION, qubits=1, paulis=("Z",))
    assert run.result(outcome).values == (-0.5,)


def test_the_worked_example_of_docs_qpu_md_is_what_the_code_does() -> None:
    page = (Path(__file__).parents[2] / "docs" / "qpu.md").read_text()
    program = "OPENQASM 3.0;\ninput float theta;\nqubit[2] q;\nry(theta) q[0];\ncnot q[0], q[1];\n"
    assert program in page
    for attempt in (1, 2):
        frag = pb.Fragment(
            fragment_id="3f2b8c1e-0d4a-4c55-9a57-6f1d2e3c4b5a",
            job_id="j",
            attempt=attempt,
            program=program,
            bindings=[pb.Binding(values={"theta": i / 100}) for i in range(250)],
            shots=100,
            result_kind=pb.RESULT_KIND_COUNTS,
            qubits=2,
        )
        inputs = [dict(b.values) for b in frag.bindings]
        submission = plan_submission(frag, prepare_fragment(frag), inputs, LIMITS)
        assert [r.entries[0].bindings[0] for r in submission.requests] == [0, 84, 167]
        for index, request in enumerate(submission.requests):
            arguments = request.create_arguments(
                "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
                "amzn-braket-results",
                "qorchestra",
            )
            token = client_token(frag.fragment_id, attempt, index, arguments)
            assert f"`{token}`" in page
