"""New jobs announced through Postgres ``NOTIFY``, so an orchestrator plans them at once.

The API's transaction that stores a job also sends a notification on :data:`JOBS_CHANNEL`
(Postgres delivers it when, and only if, the transaction commits). Each orchestrator keeps one
connection that ``LISTEN``\\s and wakes its dispatch loop for every notification. The
notification is only a hint: the dispatch loop still claims jobs from the ``jobs`` table (with
``SKIP LOCKED``) and still polls every ``poll_interval_s``, so a lost connection or a missed
notification delays a job by one poll, never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

#: The channel new jobs are announced on.
JOBS_CHANNEL = "qorch_jobs"
#: How long a wait for notifications lasts before the listener checks whether to stop.
WAIT_S = 1.0
#: Pause before connecting again after the connection failed.
RECONNECT_S = 2.0


def announce_job(session: Session) -> None:
    """Tell listening orchestrators, when this transaction commits, that a job is queued."""
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://``) as psycopg connects to it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class JobListener:
    """A thread that calls ``on_job()`` for every job announced on :data:`JOBS_CHANNEL`, and
    once after every (re)connection (announcements made while it was away are lost)."""

    def __init__(self, database_url: str, on_job: Callable[[], None]) -> None:
        self._conninfo = libpq_url(database_url)
        self._on_job = on_job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-listener", daemon=True)
        #: Notifications received (for tests and logs).
        self.received = 0

    def start(self) -> JobListener:
        """Start listening in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; returns within about :data:`WAIT_S`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT_S + 5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    self._on_job()  # anything announced while this connection was away
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=WAIT_S):
                            self.received += 1
                            self._on_job()
            except psycopg.Error as exc:  # Postgres away: the dispatch loop's poll covers it
                logger.warning("job notifications interrupted: %s", str(exc).splitlines()[0])
                self._stop.wait(RECONNECT_S)
