"""AwsDeviceExecutor against Braket's API and S3 over real HTTP on loopback.

S3 is moto's server; Braket is the stand-in of ``tests/support/braket_api.py``, which runs every
task with Braket's local simulator and writes the results to that S3. boto3 finds both through
``AWS_ENDPOINT_URL_BRAKET`` and ``AWS_ENDPOINT_URL_S3``, as a node would in production; the
executor is built exactly as the agent builds it. Nothing here waits on a clock: the stand-in
ends every task before it answers CreateQuantumTask (or never, where a test says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.executors.aws import AwsDeviceExecutor
from nodes.executors.base import ExecutionError, Executor
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from tests.support.braket_api import ACCESS_KEY, SECRET_KEY, BraketStandIn, moto_s3

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BUCKET = "amazon-braket-qorch-test"
PREFIX = "runs/test"
REGION = "us-west-2"
TOLERANCE = 1e-10

#: Six qubits, each set by its own input: rx(pi b) leaves qubit k in |b>, so binding i of
#: :func:`bits` measures i's bits, every shot.
Z_PROGRAM = (
    "OPENQASM 3.0;\n"
    + "".join(f"input float t{k};\n" for k in range(6))
    + ("qubit[6] q;\n" + "".join(f"rx(t{k}) q[{k}];\n" for k in range(6)))
)

#: Qubits 0-1 in Z eigenstates, 2-3 in X eigenstates, 4-5 in Y eigenstates, by the same bits:
#: every observable of :data:`OBSERVABLES` has the value +1 or -1 in every shot.
MIXED_PROGRAM = (
    "OPENQASM 3.0;\n"
    + "".join(f"input float t{k};\n" for k in range(6))
    + (
        "qubit[6] q;\n"
        "rx(t0) q[0];\nrx(t1) q[1];\n"
        "ry(t2 + pi / 2) q[2];\nry(t3 + pi / 2) q[3];\n"
        "rx(t4 - pi / 2) q[4];\nrx(t5 - pi / 2) q[5];\n"
    )
)
#: They act the same way on every qubit they share: one run per binding.
OBSERVABLES = ["ZZIIII", "IIXXII", "IIIIYY", "ZIXIYI", "IIIIII", "ZZXXYY"]

#: A Bell pair, flipped by the two bits of an input (:func:`bell_bits`): an eigenstate of ZZ, XX
#: and YY, which act differently on both qubits, so each is a run of its own.
BELL_PROGRAM = """OPENQASM 3.0;
input float t0;
input float t1;
qubit[2] q;
h q[0];
cnot q[0], q[1];
rx(t0) q[0];
rz(t1) q[0];
"""
CLASHING = ["ZZ", "XX", "YY", "II"]


def bits(i: int) -> dict[str, float]:
    """Inputs that write the 6 bits of ``i`` (qubit 0 = the highest bit)."""
    return {f"t{k}": math.pi * ((i >> (5 - k)) & 1) for k in range(6)}


def bell_bits(i: int) -> dict[str, float]:
    """Inputs that flip the Bell pair by the 2 low bits of ``i``."""
    return {"t0": math.pi * (i & 1), "t1": math.pi * ((i >> 1) & 1)}


def fragment(
    bindings: int,
    kind: int,
    *,
    program: str = Z_PROGRAM,
    observables: list[str] | None = None,
    shots: int = 10,
    attempt: int = 1,
) -> pb.Fragment:
    bell = program == BELL_PROGRAM
    return pb.Fragment(
        fragment_id="f-1",
        job_id="j-1",
        attempt=attempt,
        pool="aws-sv1",
        program=program,
        bindings=[
            pb.Binding(values=bell_bits(i) if bell else bits(i % 64)) for i in range(bindings)
        ],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=observables or [],
        qubits=2 if bell else 6,
    )


def exact(frag: pb.Fragment) -> list[pb.BindingResult]:
    """The local simulator's exact results of the fragment, binding by binding."""
    copy = pb.Fragment()
    copy.CopyFrom(frag)
    copy.shots = 0
    return LocalExecutor("braket_sv", compiled=False).execute(copy)


def assert_close(got: list[pb.BindingResult], want: list[pb.BindingResult]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w.HasField("expectations"):
            diffs = [
                abs(a - b)
                for a, b in zip(g.expectations.values, w.expectations.values, strict=True)
            ]
            assert max(diffs) < TOLERANCE, (i, g, w)
        else:
            keys = set(g.probabilities.probabilities) | set(w.probabilities.probabilities)
            for key in keys:
                p, q = (
                    g.probabilities.probabilities.get(key, 0.0),
                    w.probabilities.probabilities.get(key, 0.0),
                )
                assert abs(p - q) < TOLERANCE, (i, key, g, w)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on loopback, with the results bucket."""
    with moto_s3(BUCKET, REGION) as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str) -> None:
    """Credentials for the loopback servers, and nothing from this machine's AWS setup."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "BRAKET_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # errors come back at once
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)


def stand_in(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, **options: object) -> BraketStandIn:
    api = BraketStandIn(s3_endpoint, SV1, **options)  # type: ignore[arg-type]
    api.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BRAKET", api.url)
    return api


@pytest.fixture
def braket(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> Iterator[BraketStandIn]:
    """A device that takes program sets (at most 100 executables a task)."""
    api = stand_in(monkeypatch, s3_endpoint)
    yield api
    api.close()


@pytest.fixture
def braket_without_program_sets(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> Iterator[BraketStandIn]:
    """A device that does not take program sets."""
    api = stand_in(monkeypatch, s3_endpoint, program_sets=False)
    yield api
    api.close()


def executor(poll_timeout_s: float = 60.0, poll_interval_s: float = 0.01) -> AwsDeviceExecutor:
    """Built as the agent builds it: default boto3 session, region from the settings."""
    return AwsDeviceExecutor(
        SV1, BUCKET, PREFIX, REGION, poll_timeout_s, poll_interval_s=poll_interval_s
    )


@pytest.mark.parametrize(
    ("kind", "program", "observables"),
    [
        (pb.RESULT_KIND_EXPECTATION, MIXED_PROGRAM, OBSERVABLES),
        (pb.RESULT_KIND_PROBABILITIES, Z_PROGRAM, None),
    ],
    ids=["expectation", "probabilities"],
)
def test_64_bindings_on_a_program_set_device_are_one_task(
    braket: BraketStandIn, kind: int, program: str, observables: list[str] | None
) -> None:
    frag = fragment(64, kind, program=program, observables=observables)

    results = executor().execute(frag)

    creates = braket.log("CreateQuantumTask")
    assert len(creates) == 1 and creates[0].created
    (task,) = braket.created()
    assert task.action_type == "braket.ir.openqasm.program_set"
    assert (task.programs, task.executables) == (1, 64)
    assert task.request["shots"] == 64 * frag.shots
    assert_close(results, exact(frag))


def test_counts_map_back_to_their_bindings(braket: BraketStandIn) -> None:
    frag = fragment(64, pb.RESULT_KIND_COUNTS, shots=7)

    results = executor().execute(frag)

    assert len(braket.created()) == 1
    assert [dict(r.counts.counts) for r in results] == [{format(i, "06b"): 7} for i in range(64)]


def test_250_bindings_are_three_tasks_within_the_limit(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(250, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, split_results=False) as braket:
        results = executor().execute(frag)

    tasks = braket.created()
    assert len(braket.log("CreateQuantumTask")) == len(tasks) == 3
    assert sorted(t.executables for t in tasks) == [83, 83, 84]
    assert [dict(r.counts.counts) for r in results] == [
        {format(i % 64, "06b"): 4} for i in range(250)
    ]


def test_sampled_observables_that_need_three_runs_go_as_three_programs(
    braket: BraketStandIn,
) -> None:
    frag = fragment(30, pb.RESULT_KIND_EXPECTATION, program=BELL_PROGRAM, observables=CLASHING)

    results = executor().execute(frag)

    (task,) = braket.created()
    assert (task.programs, task.executables) == (3, 90)
    assert_close(results, exact(frag))
    # ZZ, XX, YY, II of the four Bell states, binding by binding
    assert [[round(v) for v in r.expectations.values] for r in results[:4]] == [
        [1, 1, -1, 1],
        [-1, 1, 1, 1],
        [1, -1, 1, 1],
        [-1, -1, -1, 1],
    ]


def test_results_written_inline_read_the_same(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(64, pb.RESULT_KIND_EXPECTATION, program=MIXED_PROGRAM, observables=OBSERVABLES)
    with stand_in(monkeypatch, s3_endpoint, split_results=False) as api:
        results = executor().execute(frag)
        assert len(api.created()) == 1
    assert_close(results, exact(frag))


def test_a_device_without_program_sets_gets_one_task_per_binding_and_run(
    braket_without_program_sets: BraketStandIn,
) -> None:
    frag = fragment(4, pb.RESULT_KIND_EXPECTATION, program=BELL_PROGRAM, observables=CLASHING)

    results = executor().execute(frag)

    tasks = braket_without_program_sets.created()
    assert len(tasks) == 4 * 3  # three runs per binding
    assert {t.action_type for t in tasks} == {"braket.ir.openqasm.program"}
    assert all(t.request["shots"] == frag.shots for t in tasks)
    assert_close(results, exact(frag))


def test_exact_runs_are_one_task_per_binding_even_where_program_sets_exist(
    braket: BraketStandIn,
) -> None:
    frag = fragment(3, pb.RESULT_KIND_EXPECTATION, program=MIXED_PROGRAM, shots=0)
    frag.observables[:] = OBSERVABLES

    results = executor().execute(frag)

    tasks = braket.created()
    assert len(tasks) == 3
    for task, binding in zip(tasks, frag.bindings, strict=True):
        assert task.request["deviceArn"] == SV1
        assert (task.request["outputS3Bucket"], task.request["outputS3KeyPrefix"]) == (
            BUCKET,
            PREFIX,
        )
        assert task.request["shots"] == 0
        action = json.loads(task.request["action"])
        assert action["inputs"] == dict(binding.values)
        assert "#pragma braket result expectation z(q[0]) @ z(q[1])" in action["source"]
    assert results == LocalExecutor("braket_sv").execute(frag)


def test_a_redelivered_attempt_creates_no_second_task(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10) as braket:
        first = executor().execute(frag)
        arns = [c.arn for c in braket.log("CreateQuantumTask")]
        assert len(arns) == 3  # 25 bindings, 10 a task

        # Delivered again (the agent was killed before it acknowledged): a new executor, as a
        # restarted agent has, runs the same attempt.
        again = executor().execute(frag)

        creates = braket.log("CreateQuantumTask")
        assert len(braket.created()) == 3  # one task per chunk, never a second
        assert [c.arn for c in creates[3:]] == arns
        assert [c.created for c in creates] == [True] * 3 + [False] * 3
        assert [c.client_token for c in creates[3:]] == [c.client_token for c in creates[:3]]
        assert again == first

        # A new attempt (the orchestrator re-dispatched the fragment) is new tasks.
        executor().execute(fragment(25, pb.RESULT_KIND_COUNTS, shots=4, attempt=2))
        assert len(braket.created()) == 6


def test_an_executor_is_an_executor_named_by_its_device(braket: BraketStandIn) -> None:
    built = executor()
    assert isinstance(built, Executor)
    assert built.name == SV1


def test_a_failed_task_fails_for_good_with_the_service_reason(braket: BraketStandIn) -> None:
    braket.status = "FAILED"
    braket.failure_reason = "Unsupported gate foo"

    with pytest.raises(ExecutionError, match="Unsupported gate foo") as info:
        executor().execute(fragment(2, pb.RESULT_KIND_COUNTS))
    assert info.value.retryable is False
    assert info.value.error_type == "TaskFailed"


def test_unfinished_tasks_time_out_as_retryable_and_are_cancelled(
    braket_without_program_sets: BraketStandIn,
) -> None:
    braket_without_program_sets.status = "RUNNING"

    with pytest.raises(ExecutionError, match="did not finish") as info:
        executor(poll_timeout_s=0.2, poll_interval_s=0.05).execute(
            fragment(2, pb.RESULT_KIND_COUNTS)
        )
    assert info.value.retryable is True
    cancelled = {c.arn for c in braket_without_program_sets.log("CancelQuantumTask")}
    assert cancelled == {t.arn for t in braket_without_program_sets.created()}
    assert len(cancelled) == 2


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, "ThrottlingException", True),
        (500, "InternalServiceException", True),
        (400, "ValidationException", False),
        (403, "AccessDeniedException", False),
    ],
)
def test_service_errors_say_whether_a_retry_can_help(
    braket: BraketStandIn, status: int, code: str, retryable: bool
) -> None:
    braket.create_error = (status, code)

    with pytest.raises(ExecutionError, match=code) as info:
        executor().execute(fragment(2, pb.RESULT_KIND_COUNTS))
    assert info.value.retryable is retryable
    assert info.value.error_type == code
