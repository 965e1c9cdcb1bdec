"""Live fan-out of job events to gRPC watchers.

A background thread reads the ``events`` topic and wakes the watchers of that job. Postgres
stays the source of truth: a woken watcher reads the events after its last seq from the store,
so a lost, duplicated or reordered Kafka message can delay an event but never drop or repeat
one. Watchers also re-read the store every ``fallback_s`` in case the broker is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from qorch.config import Settings
from qorch.kafka import Consumer

logger = logging.getLogger(__name__)


class EventHub:
    """Wakes asyncio watchers when their job has new events."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start following the events topic; wake-ups are delivered on ``loop``."""
        self._loop = loop
        self._thread = threading.Thread(target=self._follow, name="event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def subscribe(self, job_id: str) -> asyncio.Event:
        """An event that is set whenever ``job_id`` may have new events."""
        wake = asyncio.Event()
        self._watchers[job_id].add(wake)
        return wake

    def unsubscribe(self, job_id: str, wake: asyncio.Event) -> None:
        """Forget a watcher (call from a ``finally``)."""
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            watchers.discard(wake)
            if not watchers:
                del self._watchers[job_id]

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def notify(self, job_id: str) -> None:
        """Wake the watchers of ``job_id``; call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for wake in self._watchers.get(job_id, ()):
            wake.set()

    def _follow(self) -> None:
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    # Every API process needs every event, so no group: all partitions assigned.
                    consumer = Consumer(self._settings, [self._settings.topic("events")], None)
                msg = consumer.poll(0.5)
                if msg is not None and msg.key():
                    self.notify((msg.key() or b"").decode())
            except Exception as exc:  # broker away: watchers fall back to polling the store
                logger.warning("event fan-out interrupted: %s", exc)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()
