"""The node agent: consume one pool's fragments, execute them, publish results, heartbeat.

Delivery is at-least-once: a fragment's offset is committed only after the broker acknowledged
its result (or its dead letter). A fragment polled but not started when shutdown is requested is
not committed, so the consumer group hands it to another member.

Results and heartbeats are signed with the agent's node credential (``QORCH_NODE_CREDENTIAL``,
:mod:`qorchestra.signing`), and a result carries the nonce of the fragment message it answers.

Every message is untrusted: one too big to decode, undecodable or without ids goes to
``fragments.dlq``; a fragment over this pool's bounds (:mod:`nodes.bounds`) is answered with a
non-retryable failure before anything runs it.

Paid quantum tasks (an executor that is a :class:`QuantumTaskExecutor`: Braket devices): once
a fragment's tasks exist, the agent publishes their ARNs (a signed ``FragmentSubmitted`` on
``results``), waits for the broker's acknowledgement, and only then commits the fragment's
offset and waits on the tasks, reporting them again every third of the fragment timeout so the
orchestrator keeps the attempt alive. From then on the orchestrator, not Kafka, holds the
fragment: if this agent dies, the fragment is dispatched again carrying the ARNs, and the next
agent resumes the tasks. A SIGTERM while waiting leaves the tasks running for that next agent.
A second consumer, in group ``<prefix>pool.<pool>.cancel``, reads the pool's cancel topic and
cancels the tasks of jobs that ended unfinished (docs/qpu.md, "Idempotent submission").
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from types import TracebackType

from confluent_kafka import Message
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from nodes.bounds import FragmentLimits, LimitExceeded, check_fragment
from nodes.encoding import EncodingError, apply_encoding
from nodes.executors import adjoint
from nodes.executors.base import (
    Abandoned,
    ExecutionError,
    Executor,
    Metered,
    QuantumTaskExecutor,
    SubmittedTask,
)
from nodes.executors.device import DeviceObserver
from nodes.executors.factory import serving_executor
from nodes.program import ProgramError
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorchestra.config import Settings, creates_quantum_tasks
from qorchestra.costs import Price, actual_usd, is_paid
from qorchestra.kafka import Consumer, Handled, Producer, consume
from qorchestra.metrics import DEAD_LETTERS, NODE_FRAGMENTS, NODE_REDELIVERIES, PUBLISH_RETRIES
from qorchestra.quantum_tasks import cancellable_arns
from qorchestra.signing import NodeSigner

logger = logging.getLogger(__name__)

#: How long one consumer poll blocks; bounds how fast the loop notices shutdown().
POLL_TIMEOUT_S = 0.2
#: Backoff between attempts to publish an unacknowledged result.
RETRY_BACKOFF_S = (0.1, 5.0)
#: How long the final STOPPED heartbeat may take.
FINAL_HEARTBEAT_TIMEOUT_S = 5.0
#: How many (fragment, attempt) pairs an agent remembers to recognise a repeated delivery.
SEEN_FRAGMENTS = 4096


def default_node_id(settings: Settings) -> str:
    """``settings.node_id``, or ``<hostname>-<pid>``."""
    return settings.node_id or f"{socket.gethostname()}-{os.getpid()}"


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


class NodeAgent:
    """Serves one device pool: ``run()`` blocks until ``shutdown()``.

    The consumer joins group ``<prefix>pool.<pool>`` on ``fragments.<pool>``; every member of the
    pool shares the work. ``executor`` defaults to :func:`serving_executor` (a pool this node
    lacks the configuration for is still served: its fragments fail at once with the reason);
    an executor the agent built is closed when ``run()`` ends, one passed in belongs to the
    caller. ValueError when ``settings`` hold no valid node credential.
    """

    def __init__(
        self,
        settings: Settings,
        pool: str,
        executor: Executor | None = None,
        *,
        producer: Producer | None = None,
    ) -> None:
        enroll = (
            f"an admin enrolls this agent with 'qorch nodes enroll --pool {pool}' and it runs "
            "with QORCH_NODE_CREDENTIAL set to what that printed"
        )
        credential = settings.node_credential.get_secret_value()
        if not credential:
            raise ValueError(f"no node credential: {enroll}")
        try:
            self._signer = NodeSigner(credential)
        except ValueError as exc:
            raise ValueError(f"QORCH_NODE_CREDENTIAL: {exc}; {enroll}") from None
        self.settings = settings
        self.pool = pool
        self.node_id = default_node_id(settings)
        self.group = f"{settings.topic_prefix}pool.{pool}"
        self._owns_executor = executor is None
        self.executor: Executor = executor or serving_executor(pool, settings)
        #: The executor, when its work is paid quantum tasks (reported, resumed, cancelled).
        self._tasks_executor = (
            self.executor if isinstance(self.executor, QuantumTaskExecutor) else None
        )
        self.limits = FragmentLimits.for_pool(settings, pool)
        self._producer = producer
        self._owns_producer = producer is None
        # A plain flag: setting it is safe from a signal handler (no locks involved).
        self._stopping = False
        self._ran = False
        self._heartbeat_stop = threading.Event()
        #: What the executor's device said of itself last (``_device_loop``), for heartbeats.
        self._device: nodes_pb.DeviceState | None = None
        self._lock = threading.Lock()
        self._started_at = now()
        self.fragments_done = 0
        self.fragments_failed = 0
        self.bindings_done = 0
        self.dead_letters = 0  # messages sent to fragments.dlq: undecodable, incomplete, too big
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._consumer: Consumer | None = None  # the fragments consumer, while run() runs

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Ask ``run()`` to return after the fragment in hand; safe twice, and from a signal."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """Whether shutdown was requested."""
        return self._stopping

    def __enter__(self) -> NodeAgent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def run(self) -> None:
        """Consume, execute and publish until :meth:`shutdown`; can run once."""
        if self._ran:
            raise RuntimeError("a NodeAgent runs once; build a new one")
        self._ran = True
        topic = self.settings.fragments_topic(self.pool)
        extra = {"node_id": self.node_id, "pool": self.pool}
        producer = self._producer or Producer(self.settings)
        self._producer = producer
        heartbeats = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.node_id}", daemon=True
        )
        cancels = threading.Thread(
            target=self._cancel_loop, name=f"cancels-{self.node_id}", daemon=True
        )
        # Not joined: it may be in a slow AWS call, and it ends at its next wait.
        devices = threading.Thread(
            target=self._device_loop, name=f"device-{self.node_id}", daemon=True
        )
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self.settings, [topic], self.group)
            self._consumer = consumer
            if isinstance(self.executor, DeviceObserver):
                devices.start()
            heartbeats.start()
            if self._tasks_executor is not None:
                cancels.start()
            logger.info(
                "node agent started on %s (backend %s)", topic, self.executor.name, extra=extra
            )
            consume(consumer, self._on_message, lambda: self._stopping, POLL_TIMEOUT_S)
        finally:
            self._stopping = True
            self._heartbeat_stop.set()
            if heartbeats.is_alive():
                heartbeats.join()
                self._final_heartbeat()
            if cancels.is_alive():
                cancels.join()
            if consumer is not None:
                consumer.close()
            self._consumer = None
            if self._owns_producer:
                producer.close()
            if self._owns_executor:
                self.executor.close()
            logger.info(
                "node agent stopped: %d fragments done, %d failed",
                self.fragments_done,
                self.fragments_failed,
                extra=extra,
            )

    # -- one message -----------------------------------------------------------------------

    def _on_message(self, msg: Message) -> Handled:
        if self._stopping:  # not started: leave it uncommitted for another member
            return Handled.STOP
        return Handled.COMMIT if self._handle(msg) else Handled.KEEP

    def _handle(self, msg: Message) -> bool:
        """Process one message; True when its outcome was acknowledged and it may be committed."""
        key = (msg.key() or b"").decode("utf-8", errors="replace")[:200]
        value = msg.value() or b""
        if len(value) > self.settings.max_fragment_bytes:  # untrusted: not even decoded
            return self._dead_letter(
                msg,
                key,
                pb.Fragment(fragment_id=key),
                f"fragment of {len(value)} bytes; at most {self.settings.max_fragment_bytes}",
            )
        try:
            fragment = pb.Fragment.FromString(value)
        except DecodeError as exc:
            return self._dead_letter(
                msg, key, pb.Fragment(fragment_id=key), f"not a Fragment: {exc}"
            )
        missing = [f for f in ("fragment_id", "job_id") if not getattr(fragment, f)]
        if missing:
            return self._dead_letter(msg, key, fragment, f"Fragment without {', '.join(missing)}")
        self._note_delivery(fragment)
        try:
            result = self._execute(fragment, msg)
        except Abandoned as exc:  # stopping: its tasks run on for the next agent to resume
            logger.warning(
                "fragment left unanswered: %s",
                exc,
                extra={"job_id": fragment.job_id, "fragment_id": fragment.fragment_id},
            )
            return False
        if not self._publish(self.settings.topic("results"), fragment.job_id, result, sign=True):
            return False
        NODE_FRAGMENTS.labels(result.WhichOneof("outcome") or "none").inc()
        with self._lock:
            if result.WhichOneof("outcome") == "success":
                self.fragments_done += 1
                self.bindings_done += len(fragment.bindings)
            else:
                self.fragments_failed += 1
        return True

    def _note_delivery(self, fragment: pb.Fragment) -> None:
        """Count and log a fragment this process has received before (same id and attempt).

        Only this process's own history: Kafka keeps no delivery count, so a fragment another
        agent had received (and was killed holding) arrives here as a first delivery. That
        case is traced on the orchestrator side (docs/guarantees.md).
        """
        key = (fragment.fragment_id, fragment.attempt)
        if key in self._seen:
            NODE_REDELIVERIES.inc()
            logger.warning(
                "fragment delivered again to this agent (attempt %d); running it again, the "
                "orchestrator counts its result once",
                fragment.attempt,
                extra={"job_id": fragment.job_id, "fragment_id": fragment.fragment_id},
            )
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_FRAGMENTS:
            self._seen.popitem(last=False)

    def _execute(self, fragment: pb.Fragment, msg: Message) -> pb.FragmentResult:
        extra = {"job_id": fragment.job_id, "fragment_id": fragment.fragment_id}
        result = pb.FragmentResult(
            fragment_id=fragment.fragment_id,
            job_id=fragment.job_id,
            attempt=fragment.attempt,
            node_id=self.node_id,
            nonce=fragment.nonce,
        )
        logger.info(
            "fragment started (attempt %d, %d bindings)",
            fragment.attempt,
            len(fragment.bindings),
            extra=extra,
        )
        started = time.monotonic()
        try:
            try:
                check_fragment(fragment, self.limits)
            except LimitExceeded as exc:
                raise ExecutionError(str(exc), retryable=False, error_type="LimitExceeded") from exc
            except ProgramError as exc:
                raise ExecutionError(str(exc), retryable=False, error_type="ProgramError") from exc
            try:
                apply_encoding(fragment)
            except EncodingError as exc:
                raise ExecutionError(str(exc), retryable=False, error_type="EncodingError") from exc
            if adjoint.requested(fragment):
                outcome = adjoint.execute(self.executor, fragment)
            elif self._tasks_executor is not None:
                reporter = _TaskReports(self, fragment, msg)
                outcome = self._tasks_executor.execute_tasks(fragment, reporter)
            else:
                outcome = self.executor.execute(fragment)
            if len(outcome) != adjoint.result_count(fragment):
                raise ExecutionError(
                    f"executor returned {len(outcome)} results for "
                    f"{adjoint.result_count(fragment)} expected",
                    retryable=True,
                    error_type="ResultCountMismatch",
                )
            result.success.results.extend(outcome)
            self._report_usage(result)
            logger.info("fragment done (%d bindings)", len(outcome), extra=extra)
        except Abandoned:
            raise
        except ExecutionError as exc:
            result.failure.CopyFrom(
                pb.FragmentFailure(
                    error=exc.message, error_type=exc.error_type, retryable=exc.retryable
                )
            )
            logger.warning(
                "fragment failed (%s, retryable=%s): %s",
                exc.error_type,
                exc.retryable,
                exc.message,
                extra=extra,
            )
        except Exception as exc:
            logger.exception("fragment failed unexpectedly", extra=extra)
            result.failure.CopyFrom(
                pb.FragmentFailure(
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    retryable=True,
                )
            )
        result.duration_s = time.monotonic() - started
        result.finished_at.CopyFrom(now())
        return result

    def _report_usage(self, result: pb.FragmentResult) -> None:
        """On a paid pool, put what the fragment used into its result: the executor's count
        of tasks and shots, priced by the pool's table (``QORCH_AWS_PRICES`` and the device
        profiles). The orchestrator checks it against what the fragment could have used."""
        used = self.executor.last_usage if isinstance(self.executor, Metered) else None
        if used is None or not is_paid(self.pool):
            return
        table = self.settings.aws_price(self.pool)
        price = Price(table["per_task"], table["per_shot"])
        result.usage.CopyFrom(
            pb.Usage(
                tasks=used.tasks,
                shots=used.shots,
                price_per_task_usd=price.per_task,
                price_per_shot_usd=price.per_shot,
                cost_usd=actual_usd(used.tasks, used.shots, price),
            )
        )

    def _dead_letter(self, msg: Message, key: str, fragment: pb.Fragment, reason: str) -> bool:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        with self._lock:
            self.dead_letters += 1
        logger.warning("dead-lettering message %s: %s", where, reason, extra={"fragment_id": key})
        letter = pb.DeadLetter(fragment=fragment, reason=f"{reason} ({where})", at=now())
        DEAD_LETTERS.labels("node").inc()
        return self._publish(self.settings.topic("fragments.dlq"), key, letter)

    def _publish(self, topic: str, key: str, message: ProtoMessage, *, sign: bool = False) -> bool:
        """Send (signed, with ``sign``) until the broker acknowledges; False when shutdown
        came first."""
        assert self._producer is not None
        delay, limit = RETRY_BACKOFF_S
        value = self._signer.seal(message) if sign else message.SerializeToString()
        while True:
            if self._producer.send_and_wait(topic, key, value):
                return True
            if self._stopping:
                logger.warning(
                    "giving up on an unacknowledged message for %s (shutting down); it stays "
                    "uncommitted and will be redelivered",
                    topic,
                    extra={"key": key},
                )
                return False
            PUBLISH_RETRIES.inc()
            logger.warning(
                "send to %s not acknowledged; retrying in %.1f s", topic, delay, extra={"key": key}
            )
            self._sleep(delay)
            delay = min(delay * 2, limit)

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early on shutdown."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    # -- paid quantum tasks ----------------------------------------------------------------

    def _report_tasks(
        self,
        fragment: pb.Fragment,
        msg: Message,
        device_arn: str,
        tasks: Sequence[SubmittedTask],
        *,
        first: bool,
    ) -> None:
        """Publish a report of the fragment's tasks. The ``first`` report is waited on, and
        the fragment's offset committed once the broker has it (the orchestrator now holds
        the fragment); Abandoned when the agent stopped first. Later ones are not waited on."""
        assert self._producer is not None
        report = pb.FragmentSubmitted(
            fragment_id=fragment.fragment_id,
            job_id=fragment.job_id,
            attempt=fragment.attempt,
            node_id=self.node_id,
            nonce=fragment.nonce,
            device_arn=device_arn,
            tasks=[
                pb.QuantumTask(
                    index=t.index,
                    arn=t.arn,
                    client_token=t.client_token,
                    generation=t.generation,
                    status=t.status,
                )
                for t in tasks
            ],
            sent_at=now(),
        )
        topic = self.settings.topic("results")
        extra = {"job_id": fragment.job_id, "fragment_id": fragment.fragment_id}
        if not first:
            try:
                self._producer.send(topic, fragment.job_id, self._signer.seal(report))
            except Exception:  # a missed progress report must not fail the fragment
                logger.exception("could not send a task report", extra=extra)
            return
        if not self._publish(topic, fragment.job_id, report, sign=True):
            raise Abandoned("stopped before the broker acknowledged the report of the tasks")
        assert self._consumer is not None
        committed = self._consumer.commit_now(msg)
        logger.info(
            "%d Braket tasks reported (attempt %d)%s; waiting on them",
            len(tasks),
            fragment.attempt,
            "" if committed else " but the fragment's offset was not committed",
            extra=extra,
        )

    def _cancel_loop(self) -> None:
        """Consume the pool's cancel topic (group ``<prefix>pool.<pool>.cancel``) until
        shutdown; a crash here is logged and ends only this loop."""
        topic = self.settings.cancel_topic(self.pool)
        try:
            consumer = Consumer(
                self.settings,
                [topic],
                f"{self.group}.cancel",
                fetch_wait_max_ms=self.settings.kafka_background_fetch_wait_max_ms,
            )
            consume(consumer, self._on_cancel, lambda: self._stopping, POLL_TIMEOUT_S)
        except Exception:
            logger.exception("the cancel consumer stopped; cancels wait for a restart")

    def _on_cancel(self, msg: Message) -> Handled:
        """Cancel the tasks one cancel request names (any agent of the pool may: a task is
        cancelled by its ARN). A request that is not one is logged and skipped."""
        assert self._tasks_executor is not None
        try:
            request = pb.CancelTasks.FromString(msg.value() or b"")
            arns = cancellable_arns(request.tasks)
        except (DecodeError, ValueError) as exc:
            logger.warning(
                "cancel request %s[%d]@%d skipped: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            return Handled.COMMIT
        cancelled = self._tasks_executor.cancel_tasks(arns)
        logger.info(
            "%d of %d Braket tasks cancelled: %s",
            cancelled,
            len(arns),
            request.reason[:200] or "on request",
            extra={"job_id": request.job_id[:64], "fragment_id": request.fragment_id[:64]},
        )
        return Handled.COMMIT

    # -- heartbeats ------------------------------------------------------------------------

    def heartbeat(self, state: nodes_pb.NodeState.ValueType) -> nodes_pb.Heartbeat:
        """This node's heartbeat now, in ``state``, with what its device said last."""
        with self._lock:
            done, failed, bindings = self.fragments_done, self.fragments_failed, self.bindings_done
            device = self._device
        return nodes_pb.Heartbeat(
            node_id=self.node_id,
            pool=self.pool,
            backend=self.executor.name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            state=state,
            started_at=self._started_at,
            sent_at=now(),
            fragments_done=done,
            fragments_failed=failed,
            bindings_done=bindings,
            device=device,
        )

    def _device_loop(self) -> None:
        """Read the device's status, queue and windows (``DeviceObserver``) until the agent
        stops: every ``QORCH_DEVICE_STATUS_INTERVAL_S`` on a pool of paid Braket tasks (each
        read is two GetDevice calls), every heartbeat elsewhere. A read that fails keeps the
        last one; its thread is its own, so a slow AWS call never delays a heartbeat."""
        assert isinstance(self.executor, DeviceObserver)
        interval = (
            self.settings.device_status_interval_s
            if creates_quantum_tasks(self.pool)
            else self.settings.heartbeat_interval_s
        )
        while True:
            try:
                device = self.executor.device_state()
                with self._lock:
                    self._device = device
            except Exception as exc:  # the heartbeats go on with the last reading
                logger.warning("could not read the device's status: %s", exc)
            if self._heartbeat_stop.wait(interval):
                return

    def _heartbeat_loop(self) -> None:
        assert self._producer is not None
        topic = self.settings.topic("heartbeats")
        while True:
            state = nodes_pb.NODE_STATE_STOPPING if self._stopping else nodes_pb.NODE_STATE_RUNNING
            try:
                self._producer.send(topic, self.node_id, self._signer.seal(self.heartbeat(state)))
            except Exception:  # a missed heartbeat must not kill the agent
                logger.exception("could not send a heartbeat")
            if self._heartbeat_stop.wait(self.settings.heartbeat_interval_s):
                return

    def _final_heartbeat(self) -> None:
        assert self._producer is not None
        try:
            delivery = self._producer.send(
                self.settings.topic("heartbeats"),
                self.node_id,
                self._signer.seal(self.heartbeat(nodes_pb.NODE_STATE_STOPPED)),
            )
            if not self._producer.wait([delivery], timeout=FINAL_HEARTBEAT_TIMEOUT_S):
                logger.warning("the STOPPED heartbeat was not acknowledged")
        except Exception:
            logger.exception("could not send the STOPPED heartbeat")


class _TaskReports:
    """How an executor of paid tasks reports one fragment's tasks (a ``TaskReporter``)."""

    def __init__(self, agent: NodeAgent, fragment: pb.Fragment, msg: Message) -> None:
        self._agent = agent
        self._fragment = fragment
        self._msg = msg

    @property
    def interval_s(self) -> float:
        """A third of the fragment timeout: the orchestrator moves the attempt's deadline on
        with each report, so two may be lost before it gives up on this agent."""
        return self._agent.settings.fragment_timeout_s / 3

    def submitted(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        self._agent._report_tasks(self._fragment, self._msg, device_arn, tasks, first=True)

    def waiting(self, device_arn: str, tasks: Sequence[SubmittedTask]) -> None:
        self._agent._report_tasks(self._fragment, self._msg, device_arn, tasks, first=False)

    def stopping(self) -> bool:
        return self._agent.stopping
