"""An API's event hub started after a topic already holds events hands its watchers only the
events published from then on: the old ones are neither handed over nor decoded (watchers
replay history from Postgres). Real broker."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid

import pytest
from confluent_kafka import Producer as RawProducer

from api.event_hub import EventHub, Subscription
from proto.qorch.v1 import jobs_pb2
from qorchestra.config import Settings
from qorchestra.kafka import Producer, client_config
from qorchestra.signing import ControlPlaneSigner
from tests.support.metrics import CounterReading

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
OLD_EVENTS = 50
#: The control plane's signer of these tests (the hub hands over only what it signed).
SIGNER = ControlPlaneSigner("cp_test", secrets.token_bytes(32))


def _event(job_id: str, seq: int) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(
        job_id=job_id, seq=seq, type="progress", status=jobs_pb2.JOB_STATUS_RUNNING
    )


def _publish_old(settings: Settings, job_id: str, age_s: float) -> None:
    """``OLD_EVENTS`` events of ``job_id``, then one value that is no JobEvent at all, all
    stamped ``age_s`` ago, as an API that starts later finds them on the topic."""
    producer = RawProducer(client_config(settings))
    topic = settings.topic("events")
    stamp_ms = int((time.time() - age_s) * 1000)
    values = [SIGNER.seal(_event(job_id, seq)) for seq in range(1, OLD_EVENTS + 1)]
    # reading it would count it as refused
    values.append(b"\xff\xfe not a JobEvent")
    for value in values:
        producer.produce(topic, key=job_id.encode(), value=value, timestamp=stamp_ms)
    assert producer.flush(DEADLINE_S) == 0


async def _wait_pushed(subscription: Subscription) -> tuple[list[jobs_pb2.JobEvent], bool]:
    """What was handed to ``subscription`` once something was."""
    await asyncio.wait_for(subscription.wake.wait(), DEADLINE_S)
    await asyncio.sleep(0.2)  # anything handed over right after it comes along
    return subscription.take()


def test_a_hub_started_after_old_events_hands_over_only_new_ones(settings: Settings) -> None:
    job_id = str(uuid.uuid4())
    _publish_old(settings, job_id, age_s=3600)

    async def watch() -> tuple[list[jobs_pb2.JobEvent], bool]:
        hub = EventHub(settings, SIGNER)
        subscription = hub.watch(job_id)  # watched from the start: every message concerns it
        hub.start(asyncio.get_running_loop())
        producer = Producer(settings)
        try:
            # the next event, published now (as the orchestrator does): it comes after every
            # old message in the job's partition, so when it arrives they were all read
            new = _event(job_id, OLD_EVENTS + 1)
            assert await asyncio.to_thread(
                producer.send_and_wait, settings.topic("events"), job_id, SIGNER.seal(new)
            )
            return await _wait_pushed(subscription)
        finally:
            hub.unwatch(subscription)
            producer.close()
            await asyncio.to_thread(hub.stop)

    refused = CounterReading()
    pushed, stale = asyncio.run(watch())
    assert [e.seq for e in pushed] == [OLD_EVENTS + 1]
    assert not stale
    assert refused.grew("qorch_bus_rejected_total", topic="events", reason="malformed") == 0


def test_events_within_the_margin_are_still_handed_over(settings: Settings) -> None:
    """A publisher whose clock runs a little behind this host's: its events are not old."""
    job_id = str(uuid.uuid4())
    _publish_old(settings, job_id, age_s=5)

    async def watch() -> tuple[list[jobs_pb2.JobEvent], bool]:
        hub = EventHub(settings, SIGNER)  # the default margin is far more than 5 s
        subscription = hub.watch(job_id)
        hub.start(asyncio.get_running_loop())
        try:
            return await _wait_pushed(subscription)
        finally:
            hub.unwatch(subscription)
            await asyncio.to_thread(hub.stop)

    pushed, _ = asyncio.run(watch())
    assert pushed and pushed[0].seq == 1
