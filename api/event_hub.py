"""Live fan-out of job events to gRPC watchers.

A background thread reads the ``events`` topic and hands each message to the watchers of its job, if
the control plane signed it (anyone who reaches the broker can write to the topic: a message without
that signature is counted in ``qorch_bus_rejected_total`` and dropped). The control plane publishes
an event only after the transaction that recorded it committed, so a message is a stored event: a
watcher yields it at once when it is the next in sequence, without reading Postgres. Postgres stays
the source of truth: a gap (a lost, reordered or not yet seen message), a wake-up without an event
(``notify``) and the fallback timeout make the watcher read the events after its last seq from the
store, so a Kafka message can delay an event but never drop or repeat one. That keeps the store out
of the live path: with 20 watchers, one event costs 20 store reads otherwise.

The hub needs only events published from its start on: a watcher subscribes first and then
replays the history from Postgres. The consumer still starts at the earliest offset (the
embedded broker's end offsets, ``offsets_for_times`` and ``auto.offset.reset=latest`` are wrong,
../shared/KAFKA-NOTES.md), but it skips every message stamped more than ``START_MARGIN_S``
before the consumer was made, by the record's timestamp alone: an old event is neither decoded
nor handed to a watcher, on any broker. An event skipped wrongly (a publisher's clock more than
the margin behind) is only late: the watcher finds it in the store at its next fallback read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from proto.qorch.v1 import jobs_pb2
from qorchestra import metrics
from qorchestra.config import Settings
from qorchestra.kafka import Consumer, Handled, consume
from qorchestra.signing import ControlPlaneSigner, Rejected

logger = logging.getLogger(__name__)

#: Events held for one watcher that has not taken them; past this it re-reads the store.
MAX_PENDING = 1000
#: Seconds before the consumer was made that a message may be stamped and still be handed to
#: watchers: room for the clocks of the publishing hosts to differ from this one's.
START_MARGIN_S = 60.0


def is_old(msg: Message, since_ms: int) -> bool:
    """Whether ``msg`` was stamped (create or log-append time, in ms) before ``since_ms``;
    a message without a timestamp is not old."""
    kind, stamp = msg.timestamp()
    return kind != TIMESTAMP_NOT_AVAILABLE and stamp < since_ms


# ---------------------------------------------------------------- pure


def in_order(
    last: int, pushed: Iterable[jobs_pb2.JobEvent]
) -> tuple[list[jobs_pb2.JobEvent], bool]:
    """The pushed events that follow seq ``last`` without a gap, in order, and whether some
    pushed event lies beyond a gap (then the store has the missing ones).

    Events at or before ``last`` are duplicates and are dropped.
    """
    by_seq = {e.seq: e for e in pushed if e.seq > last}
    ready = []
    while last + 1 in by_seq:
        last += 1
        ready.append(by_seq.pop(last))
    return ready, bool(by_seq)


# ---------------------------------------------------------------- subscriptions


@dataclass(eq=False)
class Subscription:
    """One watcher of one job: events pushed to it, and whether it must read the store."""

    job_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: list[jobs_pb2.JobEvent] = field(default_factory=list)
    stale: bool = False

    def take(self) -> tuple[list[jobs_pb2.JobEvent], bool]:
        """The pushed events so far, and whether the store must be read; resets both."""
        pending, stale = self.pending, self.stale
        self.pending, self.stale = [], False
        return pending, stale


class EventHub:
    """Hands events to asyncio watchers of their job (all methods but ``notify`` and the
    follower thread run on the event loop)."""

    def __init__(
        self,
        settings: Settings,
        signer: ControlPlaneSigner,
        start_margin_s: float = START_MARGIN_S,
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._start_margin_s = start_margin_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: dict[str, dict[asyncio.Event, Subscription]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start following the events topic; events are handed over on ``loop``."""
        self._loop = loop
        self._thread = threading.Thread(target=self._follow, name="event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def watch(self, job_id: str) -> Subscription:
        """Start collecting ``job_id``'s events; call ``unwatch`` in a ``finally``."""
        subscription = Subscription(job_id)
        self._subscriptions.setdefault(job_id, {})[subscription.wake] = subscription
        return subscription

    def unwatch(self, subscription: Subscription) -> None:
        """Forget a watcher."""
        self.unsubscribe(subscription.job_id, subscription.wake)

    def subscribe(self, job_id: str) -> asyncio.Event:
        """An event that is set whenever ``job_id`` may have new events."""
        return self.watch(job_id).wake

    def unsubscribe(self, job_id: str, wake: asyncio.Event) -> None:
        """Forget a watcher (call from a ``finally``)."""
        subscriptions = self._subscriptions.get(job_id)
        if subscriptions is not None:
            subscriptions.pop(wake, None)
            if not subscriptions:
                del self._subscriptions[job_id]

    def watcher_count(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    def notify(self, job_id: str) -> None:
        """Wake the watchers of ``job_id`` to read the store; call from any thread."""
        self._call(self._mark_stale, job_id)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _mark_stale(self, job_id: str) -> None:
        for subscription in self._subscriptions.get(job_id, {}).values():
            subscription.stale = True
            subscription.wake.set()

    def _push(self, job_id: str, event: jobs_pb2.JobEvent) -> None:
        for subscription in self._subscriptions.get(job_id, {}).values():
            if len(subscription.pending) >= MAX_PENDING:  # a slow watcher: it reads the store
                subscription.pending.clear()
                subscription.stale = True
            else:
                subscription.pending.append(event)
            subscription.wake.set()

    def _received(self, key: bytes, value: bytes | None) -> None:
        """One message of the events topic (follower thread): handed to its job's watchers
        when the control plane signed it; otherwise counted, logged and dropped."""
        try:
            event = self._signer.open(value, jobs_pb2.JobEvent)
        except Rejected as exc:
            metrics.BUS_REJECTED.labels("events", exc.reason.value).inc()
            logger.warning(
                "events message refused: %s",
                exc,
                extra={"signer": exc.signer, "key": key.decode("utf-8", "replace")[:200]},
            )
            return
        if event.job_id in self._subscriptions:
            self._call(self._push, event.job_id, event)

    def _follow(self) -> None:
        since_ms = 0

        def handle(msg: Message) -> Handled:
            if msg.key() and not is_old(msg, since_ms):
                self._received(msg.key() or b"", msg.value())
            return Handled.KEEP  # no group: nothing to commit

        while not self._stop.is_set():
            try:
                # Every API process needs every event, so no group: all partitions assigned,
                # from the earliest offset; what was published before now is skipped (above).
                since_ms = int((time.time() - self._start_margin_s) * 1000)
                consumer = Consumer(self._settings, [self._settings.topic("events")], None)
                consume(consumer, handle, self._stop.is_set)
            except Exception as exc:  # broker away: watchers fall back to polling the store
                logger.warning("event fan-out interrupted: %s", exc)
                self._stop.wait(1.0)
