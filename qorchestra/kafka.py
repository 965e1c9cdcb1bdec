"""The one Kafka producer/consumer wrapper every service uses (confluent-kafka).

Settings follow ../shared/KAFKA-NOTES.md: a short session timeout and fetch wait, offsets stored
only after the work is done, ``auto.offset.reset=earliest`` with idempotent consumers, and a
producer that is rebuilt when it stalls (an idempotent producer can get stuck for good after the
broker loses its state).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicCollection, TopicPartition
from confluent_kafka import Producer as _Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf.message import Message as ProtoMessage

from qorchestra.config import Settings, creates_quantum_tasks

logger = logging.getLogger(__name__)

#: Topics every deployment has, besides one ``fragments.<pool>`` topic per pool.
CORE_TOPICS = ("results", "events", "heartbeats", "fragments.dlq")


def client_config(settings: Settings) -> dict[str, Any]:
    """Settings shared by every client: bootstrap servers plus ``QORCH_KAFKA_EXTRA``."""
    if not settings.kafka_bootstrap:
        raise RuntimeError("QORCH_KAFKA_BOOTSTRAP is not set and no embedded broker was started")
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        # librdkafka's own log lines go through Python logging, in the process's format.
        "logger": logging.getLogger("librdkafka"),
        # KIP-714 client metrics: not served by every broker, and unused here.
        "enable.metrics.push": False,
        **security_config(settings),
        **settings.kafka_extra,
    }


def security_config(settings: Settings) -> dict[str, str]:
    """librdkafka's security settings (SASL/SCRAM, TLS, mTLS) from the ``QORCH_KAFKA_*`` ones;
    empty settings are left out, so a plaintext broker needs none."""
    values = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password.get_secret_value(),
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": settings.kafka_ssl_key_password.get_secret_value(),
    }
    return {name: value for name, value in values.items() if value}


def admin_client(settings: Settings) -> AdminClient:
    """An admin client with the service's connection and security settings."""
    return AdminClient(client_config(settings))


def ensure_topics(
    settings: Settings,
    pools: Iterable[str] = (),
    timeout: float = 15.0,
    admin: AdminClient | None = None,
    core: Iterable[str] = CORE_TOPICS,
) -> None:
    """Create the ``core`` topics and one fragments topic per pool (and, for pools whose agents
    create quantum tasks, its cancel topic), if they do not exist yet.

    Topics are created explicitly, with their partition counts, before anyone subscribes. A
    service names only the core topics it uses: under per-role ACLs a principal sees no
    other topic, and would try (and fail) to create it.
    A service that checks again and again passes its own long-lived ``admin`` client: each
    new client starts threads and connections (measurable at a check every few seconds).
    """
    pools = list(pools)
    names = [settings.topic(t) for t in core] + [settings.fragments_topic(p) for p in pools]
    names += [settings.cancel_topic(p) for p in pools if creates_quantum_tasks(p)]
    admin = admin or admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = []
    for name in names:
        if name in existing:
            continue
        config = {"cleanup.policy": "compact"} if name == settings.topic("heartbeats") else {}
        wanted.append(
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                config=config,
            )
        )
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            logger.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def topic_ids(
    settings: Settings,
    names: Sequence[str],
    timeout: float = 5.0,
    admin: AdminClient | None = None,
) -> dict[str, str]:
    """The broker's id of each topic: a topic deleted and created again gets a new id, which is
    how a service notices that the broker lost its state."""
    admin = admin or admin_client(settings)
    futures = admin.describe_topics(TopicCollection(list(names)), request_timeout=timeout)
    return {name: str(future.result(timeout).topic_id) for name, future in futures.items()}


@dataclass
class Delivery:
    """Outcome of one produced message, filled in by the delivery callback."""

    key: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    #: The failure says the client itself is stuck (see :func:`needs_new_client`).
    stuck: bool = False

    @property
    def ok(self) -> bool:
        return self.done.is_set() and self.error is None


class Producer:
    """A long-lived producer, one per process.

    ``send`` is asynchronous; ``send_and_wait`` and ``wait`` block until the broker acknowledged.
    After a delivery timeout the underlying client is rebuilt, because an idempotent producer can
    stay stuck after the broker restarts.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._stalled = False  # set by a delivery timeout; the next send builds a new client
        self._producer = self._build()

    def _build(self) -> _Producer:
        return _Producer(
            {
                **client_config(self._settings),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": self._settings.kafka_linger_ms,
                "message.timeout.ms": self._settings.kafka_message_timeout_ms,
                "compression.type": "lz4",
                # Topics are created explicitly (ensure_topics); a producer that created a lost
                # topic again would give it the wrong partitions and config, and would hide
                # from the orchestrator that the broker lost its state.
                "allow.auto.create.topics": False,
            }
        )

    def send(self, topic: str, key: str, message: ProtoMessage | bytes) -> Delivery:
        """Queue ``message`` for ``topic`` under ``key``; returns a handle to wait on."""
        delivery = Delivery(key=key)
        payload = message if isinstance(message, bytes) else message.SerializeToString()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                delivery.done.set()
                return
            logger.warning("delivery to %s failed for key %s: %s", topic, key, err.str())
            self._fail(delivery, err.str(), err)

        if self._stalled:  # a fire-and-forget send timed out: the client may be stuck for good
            self._rebuild()
        with self._lock:
            producer = self._producer
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: serve callbacks, then try again
            except KafkaException as exc:
                # e.g. a topic the client already knows is missing: this message fails, the
                # caller (the outbox relay) keeps it for later, and nothing else is affected.
                # A client in a fatal state refuses every message this way, for good: it is
                # built again, as after a fatal delivery failure.
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                error = err.str() if err is not None else str(exc)
                logger.warning("cannot produce to %s for key %s: %s", topic, key, error)
                self._fail(delivery, error, err)
                return delivery
        producer.poll(0)
        return delivery

    def _fail(self, delivery: Delivery, error: str, err: KafkaError | None) -> None:
        """Record that a message failed; a failure that leaves the client stuck makes the next
        send build a new one (a fire-and-forget sender never calls :meth:`wait`)."""
        delivery.error = error
        delivery.stuck = err is not None and needs_new_client(err)
        if delivery.stuck:
            self._stalled = True
        delivery.done.set()

    def wait(self, deliveries: Sequence[Delivery], timeout: float | None = None) -> bool:
        """Wait until every delivery is acknowledged or failed; True when all succeeded."""
        limit = timeout if timeout is not None else self._settings.kafka_message_timeout_ms / 1000
        deadline = time.monotonic() + limit + 1.0
        with self._lock:
            producer = self._producer
        while not all(d.done.is_set() for d in deliveries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            producer.flush(min(remaining, 0.5))
        ok = all(d.ok for d in deliveries)
        if not ok and any(d.stuck for d in deliveries):
            self._rebuild()
        return ok

    def send_and_wait(self, topic: str, key: str, message: ProtoMessage | bytes) -> bool:
        """Send one message and wait for the broker's acknowledgement."""
        return self.wait([self.send(topic, key, message)])

    def _rebuild(self) -> None:
        logger.warning(
            "producer stuck (delivery timeouts or a lost producer id); building a new one"
        )
        with self._lock:
            self._stalled = False
            old, self._producer = self._producer, self._build()
        old.purge()
        old.flush(0)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued; safe to call twice."""
        with self._lock:
            remaining = self._producer.flush(timeout)
        if remaining:
            logger.warning("%d messages were not delivered before close", remaining)


#: Failures after which an idempotent producer does not recover by itself. A broker that
#: restarted empty forgets every producer id: the client then times out (UNKNOWN_PRODUCER_ID
#: leaves it stuck, KAFKA-NOTES.md), or is fenced when the new broker handed its id to another
#: client, and every later message fails the same way.
STUCK_PRODUCER_ERRORS = frozenset(
    {
        KafkaError._FATAL,  # produce() on a client in a fatal state (an idempotence failure)
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.PRODUCER_FENCED,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)


def needs_new_client(err: KafkaError) -> bool:
    """Whether a failed message (refused by ``produce`` or failed in delivery) means the
    producer must be built again."""
    return err.fatal() or err.code() in STUCK_PRODUCER_ERRORS


class Consumer:
    """A consumer in a group, or on explicitly assigned partitions when ``group`` is None.

    ``fetch_wait_max_ms`` overrides ``kafka_fetch_wait_max_ms`` for a consumer off the
    latency path (heartbeats): the embedded broker holds every empty fetch that long, and
    each one costs it CPU.

    Offsets are stored only through :meth:`commit` after the caller finished the work.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        group: str | None,
        *,
        assign_all: bool = False,
        fetch_wait_max_ms: int | None = None,
    ) -> None:
        config: dict[str, Any] = {
            **client_config(settings),
            "group.id": group or f"qorch-unassigned-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka_session_timeout_ms,
            "heartbeat.interval.ms": settings.kafka_heartbeat_interval_ms,
            "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
            "fetch.wait.max.ms": fetch_wait_max_ms or settings.kafka_fetch_wait_max_ms,
            "partition.assignment.strategy": "cooperative-sticky",
        }
        self._consumer = _Consumer(config)
        self._closed = False
        if assign_all or group is None:
            partitions = []
            metadata = self._consumer.list_topics(timeout=15)
            for topic in topics:
                topic_meta = metadata.topics.get(topic)
                if topic_meta is None or topic_meta.error is not None:
                    raise RuntimeError(f"topic {topic} does not exist")
                partitions += [TopicPartition(topic, p) for p in topic_meta.partitions]
            self._consumer.assign(partitions)
        else:
            self._consumer.subscribe(list(topics))

    def poll(self, timeout: float) -> Message | None:
        """Next message, or None after ``timeout`` seconds. Non-fatal errors are logged."""
        msg = self._consumer.poll(timeout)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("consumer error: %s", err.str())
            return None
        return msg

    def commit(self, msg: Message) -> None:
        """Record that ``msg`` has been fully processed (at-least-once)."""
        try:
            self._consumer.store_offsets(msg)
            self._consumer.commit(asynchronous=True)
        except KafkaException as exc:  # e.g. its partition was revoked meanwhile
            logger.debug("commit skipped: %s", exc)

    def commit_now(self, msg: Message) -> bool:
        """Commit ``msg``'s offset and wait for the broker to take it: for a message whose
        further progress is recorded elsewhere before its work ends (a node agent's paid
        tasks, once the orchestrator has their ARNs). False when the commit failed (the
        message may then be delivered again)."""
        try:
            self._consumer.store_offsets(msg)
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            logger.warning("offset of %s[%d] not committed: %s", msg.topic(), msg.partition(), exc)
            return False
        return True

    def assignment(self) -> list[TopicPartition]:
        """Partitions currently assigned (call from the polling thread only)."""
        return list(self._consumer.assignment())

    def close(self) -> None:
        """Commit stored offsets and leave the group; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.debug("consumer close: %s", exc)


class Handled(Enum):
    """What a message handler of :func:`consume` did with a message."""

    COMMIT = "commit"  # done: its offset may be committed
    KEEP = "keep"  # not done (or nothing to commit): leave its offset for a redelivery
    STOP = "stop"  # stopping before it was done: leave it, and end the loop


def consume(
    consumer: Consumer,
    handle: Callable[[Message], Handled],
    stopped: Callable[[], bool],
    poll_timeout_s: float = 0.5,
) -> None:
    """The one consumer loop: poll until ``stopped()``, hand each message to ``handle``, commit
    it only after the work is done (at least once), and close the consumer at the end (also
    when ``handle`` raises). Polls block at most ``poll_timeout_s``, so a stop is seen that
    soon; there is no busy wait."""
    try:
        while not stopped():
            msg = consumer.poll(poll_timeout_s)
            if msg is None:
                continue
            outcome = handle(msg)
            if outcome is Handled.STOP:
                break
            if outcome is Handled.COMMIT:
                consumer.commit(msg)
    finally:
        consumer.close()
