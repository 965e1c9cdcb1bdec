"""The node agent: consume one pool's fragments, execute them, publish results, heartbeat.

Delivery is at-least-once: a fragment's offset is committed only after the broker acknowledged
its result (or its dead letter). A fragment polled but not started when shutdown is requested is
not committed, so the consumer group hands it to another member.

Results and heartbeats are signed with the agent's node credential (``QORCH_NODE_CREDENTIAL``,
:mod:`qorchestra.signing`), and a result carries the nonce of the fragment message it answers.

Every message is untrusted: one too big to decode, undecodable or without ids goes to
``fragments.dlq``; a fragment over this pool's bounds (:mod:`nodes.bounds`) is answered with a
non-retryable failure before anything runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from types import TracebackType

from confluent_kafka import Message
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from nodes.bounds import FragmentLimits, LimitExceeded, check_fragment
from nodes.encoding import EncodingError, apply_encoding
from nodes.executors.base import ExecutionError, Executor
from nodes.executors.factory import serving_executor
from nodes.program import ProgramError
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2 as nodes_pb
from qorchestra.config import Settings
from qorchestra.kafka import Consumer, Handled, Producer, consume
from qorchestra.metrics import DEAD_LETTERS, NODE_FRAGMENTS, NODE_REDELIVERIES, PUBLISH_RETRIES
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
        self.limits = FragmentLimits.for_pool(settings, pool)
        self._producer = producer
        self._owns_producer = producer is None
        # A plain flag: setting it is safe from a signal handler (no locks involved).
        self._stopping = False
        self._ran = False
        self._heartbeat_stop = threading.Event()
        self._lock = threading.Lock()
        self._started_at = now()
        self.fragments_done = 0
        self.fragments_failed = 0
        self.bindings_done = 0
        self.dead_letters = 0  # messages sent to fragments.dlq: undecodable, incomplete, too big
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

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
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self.settings, [topic], self.group)
            heartbeats.start()
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
            if consumer is not None:
                consumer.close()
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
        result = self._execute(fragment)
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

    def _execute(self, fragment: pb.Fragment) -> pb.FragmentResult:
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
            outcome = self.executor.execute(fragment)
            if len(outcome) != len(fragment.bindings):
                raise ExecutionError(
                    f"executor returned {len(outcome)} results for {len(fragment.bindings)} "
                    "bindings",
                    retryable=True,
                    error_type="ResultCountMismatch",
                )
            result.success.results.extend(outcome)
            logger.info("fragment done (%d bindings)", len(outcome), extra=extra)
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

    # -- heartbeats ------------------------------------------------------------------------

    def heartbeat(self, state: nodes_pb.NodeState.ValueType) -> nodes_pb.Heartbeat:
        """This node's heartbeat now, in ``state``."""
        with self._lock:
            done, failed, bindings = self.fragments_done, self.fragments_failed, self.bindings_done
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
        )

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
