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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nodes.agent import NodeAgent
from nodes.executors.aws import AwsDeviceExecutor
from nodes.executors.base import Abandoned, ExecutionError, Executor, SubmittedTask
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings
from qorchestra.kafka import Producer, ensure_topics
from tests.support.agents import DEADLINE_S, TopicReader, running
from tests.support.braket_api import BraketStandIn, Call, moto_s3, use_loopback_aws
from tests.support.waiting import wait_until

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
    use_loopback_aws(monkeypatch, tmp_path, s3_endpoint)


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

        # A new attempt that carries no recorded tasks (the orchestrator dispatched it again
        # before any report of them came: a straggler and its re-dispatch, both running) sends
        # the same tokens too: the tokens do not depend on the attempt.
        third = executor().execute(fragment(25, pb.RESULT_KIND_COUNTS, shots=4, attempt=2))
        assert len(braket.created()) == 3
        assert [c.arn for c in braket.log("CreateQuantumTask")[6:]] == arns
        assert third == first


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


# ------------------------------------------------------------------ reported and resumed tasks


@dataclass
class Reports:
    """A TaskReporter that records what the executor reports, with the stand-in's call log as
    it was at each report. ``on_waiting`` runs at each progress report; ``stop`` says the
    agent is stopping."""

    braket: BraketStandIn
    interval_s: float = 3600.0
    stop: bool = False
    on_waiting: Callable[[], object] | None = None
    first: list[tuple[str, list[SubmittedTask], list[Call]]] = field(default_factory=list)
    later: list[list[SubmittedTask]] = field(default_factory=list)

    def submitted(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        self.first.append((device_arn, list(tasks), self.braket.snapshot()))

    def waiting(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        assert device_arn == SV1
        self.later.append(list(tasks))
        if self.on_waiting is not None:
            self.on_waiting()

    def stopping(self) -> bool:
        return self.stop

    def tasks(self) -> list[SubmittedTask]:
        """The tasks of the (one) first report."""
        ((_, tasks, _),) = self.first
        return tasks


def carrying(frag: pb.Fragment, tasks: Sequence[SubmittedTask]) -> pb.Fragment:
    """``frag`` with ``tasks`` recorded, as the orchestrator dispatches it again."""
    again = pb.Fragment()
    again.CopyFrom(frag)
    again.tasks.extend(
        pb.QuantumTask(
            index=t.index,
            arn=t.arn,
            client_token=t.client_token,
            generation=t.generation,
            status=t.status,
        )
        for t in tasks
    )
    return again


def counts_of(results: list[pb.BindingResult]) -> list[dict[str, int]]:
    return [dict(r.counts.counts) for r in results]


def test_tasks_are_reported_before_the_executor_waits_on_them(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        # every report while waiting comes at once (interval 0); the first releases the queue
        reports = Reports(braket, interval_s=0.0, on_waiting=braket.release)

        results = executor().execute_tasks(frag, reports)

        creates = braket.log("CreateQuantumTask")
        ((device, tasks, log_then),) = reports.first
        assert device == SV1
        assert [(t.index, t.arn, t.client_token, t.generation) for t in tasks] == [
            (i, c.arn, c.client_token, 1) for i, c in enumerate(creates)
        ]
        # reported once all three exist, before a single poll
        assert [c.operation for c in log_then] == ["GetDevice"] + ["CreateQuantumTask"] * 3
        assert reports.later[0][0].status == "QUEUED"  # seen queued while waiting
        assert counts_of(results) == [{format(i % 64, "06b"): 4} for i in range(25)]


def test_a_stopped_agent_leaves_its_tasks_queued_and_the_next_attempt_resumes_them(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        stopped = Reports(braket, stop=True)
        with pytest.raises(Abandoned):
            executor().execute_tasks(frag, stopped)
        assert braket.log("CancelQuantumTask") == []  # left running for the next attempt
        assert {t.status for t in braket.created()} == {"QUEUED"}
        first_creates = len(braket.log("CreateQuantumTask"))
        assert first_creates == 3

        # Attempt 2 (on another agent: a new executor) carries the recorded tasks.
        again = carrying(fragment(25, pb.RESULT_KIND_COUNTS, shots=4, attempt=2), stopped.tasks())
        resumed = Reports(braket, interval_s=0.0, on_waiting=braket.release)
        results = executor().execute_tasks(again, resumed)

        assert len(braket.log("CreateQuantumTask")) == first_creates  # not one more
        assert [t.arn for t in resumed.tasks()] == [t.arn for t in stopped.tasks()]
        assert [t.generation for t in resumed.tasks()] == [1, 1, 1]
        polled = {c.arn for c in braket.log("GetQuantumTask")}
        assert polled == {t.arn for t in stopped.tasks()}
        assert counts_of(results) == [{format(i % 64, "06b"): 4} for i in range(25)]


def test_a_cancelled_task_is_created_again_and_the_others_resumed(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        stopped = Reports(braket, stop=True)
        with pytest.raises(Abandoned):
            executor().execute_tasks(frag, stopped)
        recorded = stopped.tasks()
        braket.cancel_quantum_task(recorded[1].arn)  # someone cancelled it in the console

        again = carrying(fragment(25, pb.RESULT_KIND_COUNTS, shots=4, attempt=2), recorded)
        resumed = Reports(braket, interval_s=0.0, on_waiting=braket.release)
        results = executor().execute_tasks(again, resumed)

        creates = braket.log("CreateQuantumTask")
        assert len(creates) == 4 and creates[3].created
        now = resumed.tasks()
        assert [t.arn for t in now][::2] == [recorded[0].arn, recorded[2].arn]
        # the replacement's token is of the next generation: not the cancelled task's
        assert now[1].arn == creates[3].arn and now[1].generation == 2
        assert creates[3].client_token != recorded[1].client_token
        assert counts_of(results) == [{format(i % 64, "06b"): 4} for i in range(25)]


def test_a_recorded_task_that_is_not_this_request_is_cancelled_and_replaced(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        stopped = Reports(braket, stop=True)
        with pytest.raises(Abandoned):
            executor().execute_tasks(frag, stopped)
        recorded = stopped.tasks()
        # Task 0 is recorded under another request's token (the plan changed), and the one
        # recorded as task 7 is in no plan of this fragment (it is in truth task 2, which
        # this delivery finds by its token: it must not be cancelled).
        wrong = SubmittedTask(0, recorded[0].arn, recorded[1].client_token, 1)
        stray = SubmittedTask(7, recorded[2].arn, recorded[2].client_token, 1)
        again = carrying(
            fragment(25, pb.RESULT_KIND_COUNTS, shots=4, attempt=2), [wrong, recorded[1], stray]
        )
        resumed = Reports(braket, interval_s=0.0, on_waiting=braket.release)
        results = executor().execute_tasks(again, resumed)

        assert [c.arn for c in braket.log("CancelQuantumTask")] == [recorded[0].arn]
        creates = braket.log("CreateQuantumTask")[3:]
        # task 0 anew (the next generation), task 2 by its token (the same task again)
        assert [(c.created, c.arn == recorded[2].arn) for c in creates] == [
            (True, False),
            (False, True),
        ]
        assert [t.arn for t in resumed.tasks()] == [
            creates[0].arn,
            recorded[1].arn,
            recorded[2].arn,
        ]
        assert counts_of(results) == [{format(i % 64, "06b"): 4} for i in range(25)]


def test_cancel_tasks_cancels_by_arn(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        stopped = Reports(braket, stop=True)
        with pytest.raises(Abandoned):
            executor().execute_tasks(fragment(25, pb.RESULT_KIND_COUNTS, shots=4), stopped)
        arns = [t.arn for t in stopped.tasks()]
        unknown = "arn:aws:braket:us-west-2:123456789012:quantum-task/nothing-here"

        # another executor, as another agent of the pool has
        assert executor().cancel_tasks([*arns, unknown]) == 3
        assert {t.status for t in braket.created()} == {"CANCELLED"}


# ------------------------------------------------------------------ the agent around it


def on_results(reader: TopicReader[signed_pb2.Signed]) -> list[Any]:
    """What the results topic carries: FragmentSubmitted and FragmentResult messages."""
    kinds = {m.DESCRIPTOR.full_name: m for m in (pb.FragmentSubmitted, pb.FragmentResult)}
    return [kinds[e.type or "qorch.v1.FragmentResult"].FromString(e.body) for _, e in reader.read()]


def task_reports(reader: TopicReader[signed_pb2.Signed]) -> list[pb.FragmentSubmitted]:
    return [m for m in on_results(reader) if isinstance(m, pb.FragmentSubmitted)]


def outcomes(reader: TopicReader[signed_pb2.Signed], outcome: str) -> list[pb.FragmentResult]:
    return [
        m
        for m in on_results(reader)
        if isinstance(m, pb.FragmentResult) and m.WhichOneof("outcome") == outcome
    ]


def test_the_agent_reports_tasks_before_waiting_and_cancels_on_request(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, kafka_settings: Settings
) -> None:
    settings = kafka_settings.model_copy(
        update={"fragment_timeout_s": 0.3, "node_id": "qpu-node"}  # a report every 0.1 s
    )
    ensure_topics(settings, ["aws-sv1"])
    results = TopicReader(settings, settings.topic("results"), signed_pb2.Signed)
    producer = Producer(settings)
    with stand_in(monkeypatch, s3_endpoint, max_executables=10, hold=True) as braket:
        agent = NodeAgent(settings, "aws-sv1", executor())
        try:
            with running(agent):
                frag = fragment(25, pb.RESULT_KIND_COUNTS, shots=4)
                frag.nonce = "n-1"
                assert producer.send_and_wait(settings.fragments_topic("aws-sv1"), "f-1", frag)

                # reported, and reported again while the tasks wait in the queue
                wait_until(lambda: task_reports(results)[2:], DEADLINE_S, what="three reports")
                first = task_reports(results)[0]
                assert (first.fragment_id, first.attempt, first.nonce) == ("f-1", 1, "n-1")
                assert (first.node_id, first.device_arn) == ("qpu-node", SV1)
                arns = [c.arn for c in braket.log("CreateQuantumTask")]
                assert [t.arn for t in first.tasks] == arns and len(arns) == 3
                braket.release()
                done = wait_until(
                    lambda: outcomes(results, "success"),
                    DEADLINE_S,
                    what="the result",
                )
                assert len(done[0].success.results) == 25
                messages = on_results(results)
                assert messages.index(done[0]) > messages.index(first)  # the report came first

                # A cancel request from the orchestrator, for a fragment whose tasks wait.
                braket.hold_tasks()
                frag = fragment(4, pb.RESULT_KIND_COUNTS, shots=4, attempt=2)
                assert producer.send_and_wait(settings.fragments_topic("aws-sv1"), "f-1/2", frag)
                waiting = wait_until(
                    lambda: [m for m in task_reports(results) if m.attempt == 2],
                    DEADLINE_S,
                    what="the second fragment's report",
                )
                cancel = pb.CancelTasks(
                    job_id="j-1", fragment_id="f-1", tasks=waiting[0].tasks, reason="test"
                )
                assert producer.send_and_wait(settings.cancel_topic("aws-sv1"), "f-1", cancel)
                failed = wait_until(
                    lambda: outcomes(results, "failure"),
                    DEADLINE_S,
                    what="the cancelled fragment's failure",
                )
                assert failed[0].failure.error_type == "TaskCancelled"
                cancelled = {c.arn for c in braket.log("CancelQuantumTask")}
                assert cancelled == {t.arn for t in waiting[0].tasks}
        finally:
            producer.close()
            results.close()
