"""Which failures make the producer build a new client (no broker)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from qorchestra.config import Settings
from qorchestra.kafka import Producer, needs_new_client


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._MSG_TIMED_OUT,  # a broker that restarted empty leaves the client stuck
        KafkaError.INVALID_PRODUCER_EPOCH,  # "a newer producer ... fences the current one"
        KafkaError.PRODUCER_FENCED,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    ],
)
def test_a_lost_producer_state_needs_a_new_client(code: int) -> None:
    assert needs_new_client(KafkaError(code))


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.MSG_SIZE_TOO_LARGE,
    ],
)
def test_a_failure_of_one_message_keeps_the_client(code: int) -> None:
    assert not needs_new_client(KafkaError(code))


def test_a_fatal_error_needs_a_new_client() -> None:
    assert needs_new_client(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, fatal=True))


def test_produce_on_a_client_in_a_fatal_state_needs_a_new_client() -> None:
    assert needs_new_client(KafkaError(KafkaError._FATAL))


class FatalClient:
    """librdkafka's producer once it is in its fatal state: ``produce`` raises ``_FATAL`` for
    every message, for good (seen in the broker-restart fault test). Python has no way to put a
    real client in that state, so this stands in for it."""

    def produce(self, *args: object, **kwargs: object) -> None:
        raise KafkaException(KafkaError(KafkaError._FATAL))

    def poll(self, timeout: float) -> int:
        return 0

    def purge(self) -> None:
        pass

    def flush(self, timeout: float = 0) -> int:
        return 0


def test_a_client_that_refuses_every_message_as_fatal_is_built_again() -> None:
    producer = Producer(Settings(kafka_bootstrap="127.0.0.1:9"))
    stuck = FatalClient()
    producer._producer = stuck  # type: ignore[assignment]
    refused = producer.send("qorch.heartbeats", "node-1", b"beat")
    assert refused.done.is_set() and refused.stuck and not refused.ok
    producer.send("qorch.heartbeats", "node-1", b"beat")  # the next send gets a new client
    assert producer._producer is not stuck
    producer.close(0)
