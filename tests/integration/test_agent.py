"""The node agent against the real Kafka-protocol broker and the real local simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.protobuf.message import Message as ProtoMessage

from nodes.agent import NodeAgent
from nodes.executors.local import LocalExecutor
from nodes.main import EXIT_CONFIG, run_agent
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorchestra.config import Settings
from qorchestra.kafka import Consumer, Producer, ensure_topics
from tests.support.agents import DEADLINE_S, POOL, PROGRAM, TopicReader, fragment, running
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

#: A fresh ``python -m nodes`` imports Braket first: tens of seconds on a loaded machine.
STARTUP_DEADLINE_S = 180.0


@pytest.fixture
def topics(kafka_settings: Settings) -> Settings:
    ensure_topics(kafka_settings, [POOL])
    return kafka_settings


@pytest.fixture
def results(topics: Settings) -> Iterator[TopicReader[pb.FragmentResult]]:
    reader = TopicReader(topics, topics.topic("results"), pb.FragmentResult, signed=True)
    yield reader
    reader.close()


@pytest.fixture
def producer(topics: Settings) -> Iterator[Producer]:
    p = Producer(topics)
    yield p
    p.close()


def publish(producer: Producer, settings: Settings, *fragments: pb.Fragment) -> None:
    for f in fragments:
        assert producer.send_and_wait(settings.fragments_topic(POOL), f.fragment_id, f)


def test_agent_executes_fragments_publishes_results_and_heartbeats(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    heartbeats = TopicReader(topics, topics.topic("heartbeats"), nodes_pb.Heartbeat, signed=True)
    settings = topics.model_copy(update={"node_id": "node-a"})
    work = [
        # 12 bindings in one fragment: one result message carries all of them
        fragment(
            "f-exp",
            "job-1",
            pb.RESULT_KIND_EXPECTATION,
            observables=["ZZI", "IIZ", "III"],
            thetas=tuple(0.25 * i for i in range(12)),
        ),
        fragment("f-prob", "job-2", pb.RESULT_KIND_PROBABILITIES),
        fragment("f-counts", "job-1", pb.RESULT_KIND_COUNTS, shots=64),
    ]
    agent = NodeAgent(settings, POOL)
    try:
        with running(agent) as thread:
            publish(producer, topics, *work)

            results.wait_for(lambda items: len(items) >= 3, "three results")
            by_fragment = {r.fragment_id: (key, r) for key, r in results.items}
            assert set(by_fragment) == {"f-exp", "f-prob", "f-counts"}
            reference = LocalExecutor("braket_sv")
            for f in work:
                key, result = by_fragment[f.fragment_id]
                assert key == f.job_id
                assert (result.job_id, result.attempt, result.node_id) == (f.job_id, 1, "node-a")
                assert result.WhichOneof("outcome") == "success", result
                assert result.duration_s > 0
                assert result.finished_at.seconds > 0
                if f.result_kind == pb.RESULT_KIND_COUNTS:
                    sums = [sum(r.counts.counts.values()) for r in result.success.results]
                    assert sums == [64] * len(f.bindings)
                else:
                    assert list(result.success.results) == reference.execute(f)

            beats = heartbeats.wait_for(
                lambda items: any(h.fragments_done == 3 for _, h in items), "heartbeat counters"
            )
            key, beat = next((k, h) for k, h in beats if h.fragments_done == 3)
            assert key == "node-a"
            assert beat.state == nodes_pb.NODE_STATE_RUNNING
            assert (beat.pool, beat.backend, beat.pid) == (POOL, "braket_sv", os.getpid())
            assert beat.bindings_done == 12 + 3 + 3 and beat.fragments_failed == 0
            assert beat.started_at.seconds > 0 and beat.sent_at.seconds >= beat.started_at.seconds

            agent.shutdown()
            thread.join(DEADLINE_S)
            assert not thread.is_alive(), "run() did not return after shutdown()"
        heartbeats.wait_for(
            lambda items: items[-1][1].state == nodes_pb.NODE_STATE_STOPPED, "STOPPED heartbeat"
        )
    finally:
        heartbeats.close()
    agent.shutdown()  # twice is fine


def test_malformed_message_goes_to_the_dlq_and_the_agent_keeps_working(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    dlq = TopicReader(topics, topics.topic("fragments.dlq"), pb.DeadLetter)
    try:
        with running(NodeAgent(topics, POOL)):
            fragments_topic = topics.fragments_topic(POOL)
            assert producer.send_and_wait(fragments_topic, "bad-1", b"\xff\xff\xffnot protobuf")
            assert producer.send_and_wait(fragments_topic, "bad-2", pb.Fragment(job_id="j"))
            publish(producer, topics, fragment("f-ok", "job-9", pb.RESULT_KIND_PROBABILITIES))

            letters = dict(dlq.wait_for(lambda items: len(items) >= 2, "two dead letters"))
            assert "not a Fragment" in letters["bad-1"].reason
            assert letters["bad-1"].fragment.fragment_id == "bad-1"
            assert letters["bad-1"].at.seconds > 0
            assert "without fragment_id" in letters["bad-2"].reason
            (key, result), *_ = results.wait_for(bool, "the valid fragment's result")
            assert (key, result.fragment_id) == ("job-9", "f-ok")
            assert result.WhichOneof("outcome") == "success"
    finally:
        dlq.close()


class Exploding:
    """An executor whose backend breaks in a way nobody anticipated."""

    name = "exploding"

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        raise RuntimeError("backend crashed")

    def close(self) -> None:
        pass


def test_failures_are_results_that_say_whether_a_retry_can_help(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    bad = fragment("f-bad", "job-3", pb.RESULT_KIND_PROBABILITIES)
    bad.program = "OPENQASM 3.0;\nqubit[2] q;\nfoo q[0];\n"
    with running(NodeAgent(topics, POOL)):
        publish(producer, topics, bad)
        (_, failed), *_ = results.wait_for(bool, "a failure")
    assert failed.WhichOneof("outcome") == "failure"
    assert failed.failure.retryable is False
    assert "foo" in failed.failure.error
    assert failed.failure.error_type

    publish(producer, topics, fragment("f-crash", "job-4", pb.RESULT_KIND_PROBABILITIES))
    with running(NodeAgent(topics, POOL, Exploding())):
        items = results.wait_for(lambda items: len(items) >= 2, "the crash result")
    crashed = items[1][1]
    assert crashed.fragment_id == "f-crash"
    assert crashed.failure.retryable is True
    assert (crashed.failure.error, crashed.failure.error_type) == (
        "backend crashed",
        "RuntimeError",
    )


#: 12 qubits, where Braket's numba kernels take over: a control on the last qubit makes its
#: single-qubit kernel raise numba's TypingError (in LocalSimulator.run too). Only bindings with
#: ``theta > 1`` reach that gate.
TYPING_ERROR_PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[12] q;
h q;
rx(theta) q[0];
if (theta > 1.0) {
  ctrl @ h q[11], q[0];
}
"""


def test_a_braket_kernel_error_is_answered_once_as_not_retryable(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    """Issue 15: the same program fails the same way on every node, so the answer says a retry
    cannot help, with Braket's message and the binding that failed; the agent goes on."""
    typing = fragment("f-typing", "job-t", pb.RESULT_KIND_EXPECTATION, thetas=(0.5, 0.7, 2.0))
    typing.program = TYPING_ERROR_PROGRAM
    typing.observables[:] = ["Z" + "I" * 11]
    typing.qubits = 12
    agent = NodeAgent(topics, POOL)
    with running(agent):
        publish(producer, topics, typing)
        (key, failed), *_ = results.wait_for(bool, "the failure")
        publish(producer, topics, fragment("f-after", "job-t2", pb.RESULT_KIND_PROBABILITIES))
        items = results.wait_for(lambda items: len(items) >= 2, "the next fragment's result")

    assert (key, failed.fragment_id, failed.WhichOneof("outcome")) == (
        "job-t",
        "f-typing",
        "failure",
    )
    assert failed.failure.retryable is False
    assert failed.failure.error_type == "TypingError"
    assert failed.failure.error.startswith("binding 2: ")
    assert "reshape() supports contiguous array only" in failed.failure.error
    assert [r.fragment_id for _, r in items] == ["f-typing", "f-after"]
    assert items[1][1].WhichOneof("outcome") == "success"
    assert (agent.fragments_failed, agent.fragments_done) == (1, 1)


class FlakyProducer(Producer):
    """A real producer whose first ``failures`` result sends are reported as not acknowledged."""

    def __init__(self, settings: Settings, failures: int, events: list[str]) -> None:
        super().__init__(settings)
        self.failures = failures
        self.events = events
        self._results_topic = settings.topic("results")

    def send_and_wait(self, topic: str, key: str, message: ProtoMessage | bytes) -> bool:
        if topic == self._results_topic and self.failures > 0:
            self.failures -= 1
            self.events.append("nack")
            return False
        ok = super().send_and_wait(topic, key, message)
        if topic == self._results_topic:
            self.events.append("ack" if ok else "nack")
        return ok


def test_result_is_resent_until_acknowledged_and_only_then_committed(
    topics: Settings,
    producer: Producer,
    results: TopicReader[pb.FragmentResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    real_commit = Consumer.commit

    def recording_commit(self: Consumer, msg: object) -> None:
        events.append("commit")
        real_commit(self, msg)  # type: ignore[arg-type]

    monkeypatch.setattr(Consumer, "commit", recording_commit)
    flaky = FlakyProducer(topics, failures=2, events=events)
    try:
        with running(NodeAgent(topics, POOL, producer=flaky)):
            publish(producer, topics, fragment("f-1", "job-5", pb.RESULT_KIND_PROBABILITIES))
            results.wait_for(bool, "the result after two failed sends")
            wait_until(lambda: "commit" in events, DEADLINE_S, what="the commit")
        assert events == ["nack", "nack", "ack", "commit"]
    finally:
        flaky.close()


def test_unacknowledged_fragment_goes_to_another_member_after_shutdown(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    events: list[str] = []
    never = FlakyProducer(topics, failures=10**9, events=events)
    first = NodeAgent(topics.model_copy(update={"node_id": "node-a"}), POOL, producer=never)
    try:
        with running(first):
            publish(producer, topics, fragment("f-1", "job-6", pb.RESULT_KIND_PROBABILITIES))
            wait_until(lambda: events.count("nack") >= 2, DEADLINE_S, what="failed sends")
        # node-a gave up without committing: the group hands the fragment to node-b.
        assert first.fragments_done == 0
        with running(NodeAgent(topics.model_copy(update={"node_id": "node-b"}), POOL)):
            (_, result), *_ = results.wait_for(bool, "the redelivered fragment's result")
        assert (result.fragment_id, result.node_id) == ("f-1", "node-b")
    finally:
        never.close()


def test_run_agent_refuses_an_unknown_pool() -> None:
    settings = make_settings(kafka_bootstrap="127.0.0.1:9")
    assert run_agent("quantum-toaster", settings) == EXIT_CONFIG


@pytest.mark.parametrize("credential", ["", "nc_0123456789abcdef.too-short", "qk_an-api-key"])
def test_an_agent_does_not_start_without_a_node_credential(
    credential: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(kafka_bootstrap="127.0.0.1:9", node_credential=credential)
    assert run_agent(POOL, settings) == EXIT_CONFIG
    assert "qorch nodes enroll --pool local-sv" in caplog.text
    if credential:
        assert credential not in caplog.text  # the secret part is never quoted


@contextmanager
def node_process(
    settings: Settings, pool: str, log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m nodes --pool POOL`` as node ``node-proc``, its output in ``log_path``;
    killed on exit if still running."""
    full_env = {
        "QORCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "QORCH_TOPIC_PREFIX": settings.topic_prefix,
        "QORCH_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "QORCH_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "QORCH_HEARTBEAT_INTERVAL_S": "0.5",
        "QORCH_NODE_ID": "node-proc",
        "QORCH_NODE_CREDENTIAL": settings.node_credential.get_secret_value(),
        **env,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodes", "--pool", pool],
            env=full_env,
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, so cleanup reaches all of it
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def stop(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM, then expect exit status 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(DEADLINE_S) == 0, log_path.read_text()
    except subprocess.TimeoutExpired:
        pytest.fail("no exit after SIGTERM:\n" + log_path.read_text())


def test_node_process_works_and_stops_cleanly_on_sigterm(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """``python -m nodes`` serves the pool until SIGTERM, then says STOPPED and exits 0."""
    ensure_topics(kafka_settings, [POOL])
    heartbeats = TopicReader(
        kafka_settings, kafka_settings.topic("heartbeats"), nodes_pb.Heartbeat, signed=True
    )
    results = TopicReader(
        kafka_settings, kafka_settings.topic("results"), pb.FragmentResult, signed=True
    )
    big = fragment(
        "f-big", "job-7", pb.RESULT_KIND_EXPECTATION, observables=["ZZZ"], thetas=(0.25,) * 16
    )
    log_path = tmp_path / "node.log"
    try:
        with node_process(kafka_settings, POOL, log_path, dict(os.environ)) as proc:
            heartbeats.wait_for(
                lambda items: any(h.state == nodes_pb.NODE_STATE_RUNNING for _, h in items),
                "the process's first heartbeat",
                STARTUP_DEADLINE_S,
            )
            producer = Producer(kafka_settings)
            try:
                publish(producer, kafka_settings, *[big] * 4)
            finally:
                producer.close()
            items = results.wait_for(lambda items: len(items) >= 4, "four results from the process")
            assert [len(r.success.results) for _, r in items] == [16] * 4
            stop(proc, log_path)
        last = heartbeats.wait_for(
            lambda items: items[-1][1].state == nodes_pb.NODE_STATE_STOPPED, "STOPPED heartbeat"
        )
        assert last[-1][0] == "node-proc"
    finally:
        heartbeats.close()
        results.close()


def without_aws(tmp_path: Path) -> dict[str, str]:
    """This environment with no AWS credentials anywhere and no metadata-service probe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "QORCH_AWS_"))}
    return {
        **env,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def test_an_aws_pool_without_credentials_fails_each_fragment_at_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """The agent of an unconfigured ``aws-*`` pool starts, and answers every fragment with a
    non-retryable failure that says what to set (so the job fails instead of timing out)."""
    pool = "aws-sv1"
    ensure_topics(kafka_settings, [pool])
    heartbeats = TopicReader(
        kafka_settings, kafka_settings.topic("heartbeats"), nodes_pb.Heartbeat, signed=True
    )
    results = TopicReader(
        kafka_settings, kafka_settings.topic("results"), pb.FragmentResult, signed=True
    )
    work = [fragment(f"f-aws-{i}", "job-aws", pb.RESULT_KIND_PROBABILITIES) for i in range(2)]
    for f in work:
        f.pool = pool
    log_path = tmp_path / "node.log"
    try:
        with node_process(kafka_settings, pool, log_path, without_aws(tmp_path)) as proc:
            (_, beat), *_ = heartbeats.wait_for(
                bool, "the agent's first heartbeat", STARTUP_DEADLINE_S
            )
            assert beat.backend.endswith("(not configured)"), beat
            assert beat.state == nodes_pb.NODE_STATE_RUNNING
            producer = Producer(kafka_settings)
            try:
                for f in work:
                    assert producer.send_and_wait(
                        kafka_settings.fragments_topic(pool), f.fragment_id, f
                    )
            finally:
                producer.close()
            items = results.wait_for(lambda items: len(items) >= 2, "both failures")
            assert {r.fragment_id for _, r in items} == {"f-aws-0", "f-aws-1"}
            for key, result in items:
                assert (key, result.node_id, result.attempt) == ("job-aws", "node-proc", 1)
                assert result.WhichOneof("outcome") == "failure"
                failure = result.failure
                assert failure.retryable is False
                assert failure.error_type == "ConfigurationError"
                assert failure.error.startswith("this node cannot run pool aws-sv1: ")
                for hint in (
                    "AWS credentials were not found",
                    "AWS_ACCESS_KEY_ID",
                    "QORCH_AWS_S3_BUCKET",
                    "QORCH_AWS_REGION",
                ):
                    assert hint in failure.error, failure.error
            assert proc.poll() is None  # still serving
            stop(proc, log_path)
        log = log_path.read_text()
        assert "pool aws-sv1 is not configured on this node" in log
        assert "AWS credentials were not found" in log
    finally:
        heartbeats.close()
        results.close()


def test_fragments_over_the_pool_bounds_fail_at_once_and_the_agent_keeps_working(
    topics: Settings, producer: Producer, results: TopicReader[pb.FragmentResult]
) -> None:
    """Injected straight on the topic: a few bytes that Braket would unroll into 10**9 gates,
    and a program wider than the pool. Each is answered with the reason before anything runs
    it (running the first would take this agent hours), then a good fragment runs."""
    looping = fragment("f-loop", "job-b1", pb.RESULT_KIND_PROBABILITIES)
    looping.program = PROGRAM + "for int i in [0:999999999] { x q[0]; }\n"
    wide = fragment("f-wide", "job-b2", pb.RESULT_KIND_PROBABILITIES)
    wide.program = "OPENQASM 3.0;\nqubit[40] q;\nh q;\n"
    agent = NodeAgent(topics, POOL)
    with running(agent):
        publish(producer, topics, looping, wide)
        refused = dict(
            (r.fragment_id, r.failure)
            for _, r in results.wait_for(lambda items: len(items) >= 2, "both refusals")
        )
        publish(producer, topics, fragment("f-good", "job-b3", pb.RESULT_KIND_PROBABILITIES))
        items = results.wait_for(lambda items: len(items) >= 3, "the good fragment's result")
    assert set(refused) == {"f-loop", "f-wide"}
    for failure in refused.values():
        assert (failure.retryable, failure.error_type) == (False, "LimitExceeded")
    assert "operations once its loops" in refused["f-loop"].error
    assert "QORCH_MAX_PROGRAM_OPERATIONS" in refused["f-loop"].error
    assert refused["f-wide"].error == (
        f"program uses 40 qubits; this pool allows {topics.max_qubits(POOL)}"
    )
    good = items[2][1]
    assert (good.fragment_id, good.WhichOneof("outcome")) == ("f-good", "success")
    assert (agent.fragments_failed, agent.fragments_done, agent.dead_letters) == (2, 1, 0)
