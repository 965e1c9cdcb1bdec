"""Which delivery failures make the producer build a new client (pure: no broker)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from qorch.kafka import needs_new_client


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
