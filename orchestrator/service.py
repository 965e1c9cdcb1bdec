"""The orchestrator process: dispatch loop, results consumer and node registry.

Three threads share one producer and one engine:
- dispatch: plans queued jobs, relays the outbox, watches for pools without a live agent
  (``pool_watch``), re-dispatches overdue fragments, queues the cancels of the quantum tasks of
  jobs that ended unfinished (``quantum_tasks``);
- results: consumes ``results`` (group ``<prefix>orchestrator``) and applies each result, and
  records each report of an attempt's quantum tasks;
- nodes: consumes ``heartbeats`` and keeps the ``nodes`` table current.
Offsets are committed only after the database transaction committed (at-least-once; the
aggregation is idempotent). Several orchestrators may run at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TypeVar

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from sqlalchemy.exc import DBAPIError, OperationalError

from orchestrator.dispatch import plan_next_job, relay_outbox, sweep_overdue
from orchestrator.pool_watch import watch_pools
from orchestrator.quantum_tasks import apply_signed_submitted, queue_cancels
from orchestrator.recovery import BrokerWatch, resend_unanswered
from orchestrator.results import Outcome, apply_signed_result
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2
from qorchestra import metrics
from qorchestra.config import Settings
from qorchestra.device_status import device_row
from qorchestra.kafka import (
    Consumer,
    Handled,
    Producer,
    admin_client,
    consume,
    ensure_topics,
    topic_ids,
)
from qorchestra.signing import ControlPlaneSigner, Rejected, Rejection, body_type, open_envelope
from qorchestra.store import repository as repo
from qorchestra.store.credentials import load_control_plane_signer, verify_node_message
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.events import publish_events
from qorchestra.store.notify import JobListener

logger = logging.getLogger(__name__)

T = TypeVar("T")

NODE_STATES = {
    nodes_pb2.NODE_STATE_RUNNING: "RUNNING",
    nodes_pb2.NODE_STATE_STOPPING: "STOPPING",
    nodes_pb2.NODE_STATE_STOPPED: "STOPPED",
}


def _observe(kind: str) -> None:
    """Count an applied result's outcome on the Prometheus counters."""
    metrics.RESULTS.labels(kind).inc()
    if kind == "duplicate":
        metrics.DUPLICATES_DROPPED.inc()
    elif kind == "retried":
        metrics.RETRIES.inc()
        metrics.REDISPATCHES.labels("failure").inc()
    elif kind == "failed":
        metrics.DEAD_LETTERS.labels("orchestrator").inc()


class Orchestrator:
    """One orchestrator process. ``run()`` blocks until ``shutdown()``."""

    def __init__(self, settings: Settings, factory: SessionFactory | None = None) -> None:
        self.settings = settings
        if factory is None:
            factory = make_session_factory(make_engine(settings.database_url))
        self._factory = factory
        self._stop = threading.Event()
        #: Set when there may be work for the dispatch loop (a job was submitted, a result freed
        #: room in a window, shutdown): it acts at once instead of at its next poll.
        self._work = threading.Event()
        self._producer: Producer | None = None
        #: Signs events and checks dispatch nonces (read from the store at the start of run()).
        self._signer: ControlPlaneSigner
        self._known_pools: set[str] = set()
        #: The broker check's admin client, kept between checks (None: make a new one).
        self._admin: AdminClient | None = None

    # ------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Run the three loops until shutdown; returns after they all stopped."""
        ensure_topics(self.settings, ["local-sv", "local-dm"])
        self._known_pools.update(["local-sv", "local-dm"])
        signer = self._with_db(lambda: load_control_plane_signer(self._factory))
        if signer is None:
            return  # shut down before the database answered
        self._signer = signer
        self._producer = Producer(self.settings)
        listener = JobListener(self.settings.database_url, self._work.set).start()
        threads = [
            threading.Thread(target=self._guard(self._results_loop), name="results"),
            threading.Thread(target=self._guard(self._nodes_loop), name="nodes"),
        ]
        for t in threads:
            t.start()
        try:
            self._guard(self._dispatch_loop)()
        finally:
            self.shutdown()
            listener.stop()
            for t in threads:
                t.join()
            self._producer.close()
            logger.info("orchestrator stopped")

    def shutdown(self) -> None:
        """Ask every loop to stop; safe to call twice and from a signal handler."""
        self._stop.set()
        self._work.set()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        """A crashed loop stops the whole process rather than leaving it half alive."""

        def run() -> None:
            try:
                loop()
            except Exception:
                logger.exception("%s loop crashed; stopping the orchestrator", loop.__name__)
                self.shutdown()
                raise

        return run

    def _with_db(self, action: Callable[[], T]) -> T | None:
        """Run ``action``, retrying with backoff while the database is unreachable."""
        delay = 0.2
        while not self._stop.is_set():
            try:
                return action()
            except DBAPIError as exc:
                if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                    raise
                metrics.DB_RETRIES.inc()
                logger.warning("database unavailable, retrying in %.1fs: %s", delay, exc.orig)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    # ------------------------------------------------------------ loops

    def _dispatch_loop(self) -> None:
        assert self._producer is not None
        producer, signer = self._producer, self._signer
        next_sweep = 0.0
        watch = BrokerWatch()
        next_topic_check = time.monotonic()
        while not self._stop.is_set():
            busy = False
            self._work.clear()  # before the work: a result applied meanwhile sets it again
            # What the results loop wrote (a training job's next step) goes out first: planning
            # takes transactions of its own, and the step would wait for them. Then what
            # planning wrote: a new job's fragments, or a running job's window topped up.
            relayed = self._with_db(lambda: relay_outbox(self._factory, producer, self.settings))
            planned = self._with_db(lambda: plan_next_job(self._factory, self.settings))
            if planned:
                busy = True
                self._with_db(self._ensure_pool_topics)
                publish_events(producer, self.settings, signer, planned)
            more = self._with_db(lambda: relay_outbox(self._factory, producer, self.settings))
            relayed = (relayed or 0) + (more or 0)
            if relayed:
                busy = True
                metrics.PUBLISHED.inc(relayed)
            if time.monotonic() >= next_sweep:
                watched = self._with_db(lambda: watch_pools(self._factory, self.settings))
                if watched:
                    publish_events(producer, self.settings, signer, watched)
                swept = self._with_db(lambda: sweep_overdue(self._factory, self.settings))
                if swept:
                    for event in swept:
                        if event.type == "redispatched":
                            metrics.REDISPATCHES.labels("timeout").inc()
                        elif event.type == "failed":
                            metrics.DEAD_LETTERS.labels("orchestrator").inc()
                    publish_events(producer, self.settings, signer, swept)
                cancelling = self._with_db(lambda: queue_cancels(self._factory, self.settings))
                if cancelling:
                    busy = True
                    self._ensure_topics(cancelling)
                next_sweep = time.monotonic() + 1.0
            if time.monotonic() >= next_topic_check:
                self._check_broker(watch)
                next_topic_check = time.monotonic() + self.settings.topic_check_interval_s
            if not busy:
                self._work.wait(self.settings.poll_interval_s)

    def _check_broker(self, watch: BrokerWatch) -> None:
        """Create missing topics; when the broker lost its state, send unanswered work again."""
        if self._admin is None:
            self._admin = admin_client(self.settings)
        try:
            ensure_topics(self.settings, sorted(self._known_pools), 5.0, self._admin)
            ids = topic_ids(self.settings, [self.settings.topic("results")], admin=self._admin)
        except Exception as exc:  # broker away: try again at the next check, with a new client
            logger.warning("broker check failed: %s", exc)
            self._admin = None
            return
        if not watch.changed(ids):
            return
        metrics.BROKER_RESETS.inc()
        logger.warning("the broker lost its topics; sending every unanswered fragment again")
        resent = self._with_db(lambda: resend_unanswered(self._factory, self.settings)) or 0
        metrics.RESENT.inc(resent)
        logger.warning("%d unanswered fragments queued again", resent)

    def _ensure_pool_topics(self) -> None:
        """Create the fragments topic of a pool the first time a job uses it."""
        with session_scope(self._factory) as session:
            pools = repo.active_pools(session)
        self._ensure_topics(pools)

    def _ensure_topics(self, pools: set[str]) -> None:
        """Create the topics of pools this process has not created yet (a pool's fragments
        topic, and its cancel topic where its agents create quantum tasks). Should the broker
        refuse now, the next broker check creates them (it covers every known pool)."""
        new = pools - self._known_pools
        if new:
            self._known_pools |= new
            try:
                ensure_topics(self.settings, sorted(new))
            except Exception as exc:
                logger.warning("could not create the topics of %s now: %s", sorted(new), exc)

    def _results_loop(self) -> None:
        consumer = Consumer(
            self.settings,
            [self.settings.topic("results")],
            group=f"{self.settings.topic_prefix}orchestrator",
        )
        consume(consumer, self._on_result, self._stop.is_set)

    def _on_result(self, msg: Message) -> Handled:
        """Apply one message of the results topic, if its proof of origin holds."""
        assert self._producer is not None
        try:
            envelope = open_envelope(msg.value())
        except Rejected as exc:
            self._refuse("results", msg, exc)
            return Handled.COMMIT

        try:
            # A result, or a report of an attempt's quantum tasks (signed as what it claims).
            kind = body_type(envelope, [pb.FragmentResult, pb.FragmentSubmitted])
        except Rejected as exc:
            self._refuse("results", msg, exc)
            return Handled.COMMIT
        applier = apply_signed_submitted if kind is pb.FragmentSubmitted else apply_signed_result

        def apply() -> Outcome:
            with session_scope(self._factory) as session:
                outcome = applier(session, envelope, self.settings)
            _observe(outcome.kind)
            if outcome.spend is not None:  # committed: counted once, as the job counted it
                tenant, pool, usd = outcome.spend
                metrics.SPEND.labels(tenant, pool).inc(usd)
            return outcome

        try:
            outcome = self._with_db(apply)
        except Rejected as exc:
            self._refuse("results", msg, exc)
            return Handled.COMMIT
        except Exception as exc:  # refused by the store (untrusted input): drop it
            self._reject("results", msg, exc)
            return Handled.COMMIT
        if outcome is None:
            return Handled.STOP  # stopping before it was applied: leave the offset uncommitted
        publish_events(self._producer, self.settings, self._signer, outcome.events)
        if outcome.dispatch:
            # Outbox rows to relay, or a free slot in a window to top up: now, not at the next
            # poll. A result of a fully written job wakes nothing: a pass that finds nothing to
            # do costs a dozen database round trips.
            self._work.set()
        return Handled.COMMIT

    def _nodes_loop(self) -> None:
        consumer = Consumer(
            self.settings,
            [self.settings.topic("heartbeats")],
            group=f"{self.settings.topic_prefix}orchestrator.nodes",
            fetch_wait_max_ms=self.settings.kafka_background_fetch_wait_max_ms,
        )
        consume(consumer, self._on_heartbeat, self._stop.is_set)

    def _on_heartbeat(self, msg: Message) -> Handled:
        """Record one message of the heartbeats topic on its node's row, if its agent's
        credential signed it."""
        try:
            envelope = open_envelope(msg.value())
        except Rejected as exc:
            self._refuse("heartbeats", msg, exc)
            return Handled.COMMIT

        def save() -> bool:
            with session_scope(self._factory) as session:
                beat, credential = verify_node_message(session, envelope, nodes_pb2.Heartbeat)
                if beat.pool != credential.pool:
                    raise Rejected(
                        Rejection.WRONG_POOL, envelope.signer, f"a credential of {credential.pool}"
                    )
                values = _heartbeat_row(beat)
                if not repo.upsert_node(session, {**values, "credential_id": credential.id}):
                    raise Rejected(Rejection.NODE_TAKEN, envelope.signer, beat.node_id[:200])
            return True

        try:
            saved = self._with_db(save)
        except Rejected as exc:
            self._refuse("heartbeats", msg, exc)
            return Handled.COMMIT
        except Exception as exc:  # refused by the store or _heartbeat_row (untrusted input)
            self._reject("heartbeats", msg, exc)
            return Handled.COMMIT
        if not saved:
            return Handled.STOP  # stopping before it was saved
        metrics.HEARTBEATS.labels("saved").inc()
        return Handled.COMMIT

    def _refuse(self, topic: str, msg: Message, exc: Rejected) -> None:
        """Count and log a message whose proof of origin failed, with the identity it claims."""
        metrics.BUS_REJECTED.labels(topic, exc.reason.value).inc()
        logger.warning(
            "%s message refused: %s",
            topic,
            exc,
            extra={"signer": exc.signer, "key": _shown_key(msg), "reason": exc.reason.value},
        )

    def _reject(self, kind: str, msg: Message, exc: Exception) -> None:
        """Count and log a message that cannot be applied; it is dropped, the loop goes on."""
        (metrics.RESULTS if kind == "results" else metrics.HEARTBEATS).labels("rejected").inc()
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        logger.warning(
            "%s message dropped (%s): %s",
            kind,
            type(exc).__name__,
            reason,
            extra={"key": _shown_key(msg)},
        )


def _shown_key(msg: Message) -> str:
    """A message's key as it may be logged: decoded leniently, cut short."""
    return (msg.key() or b"").decode("utf-8", errors="replace")[:200]


#: How far in the future a heartbeat's times may lie (clocks of agents and orchestrator drift).
HEARTBEAT_MAX_SKEW = timedelta(minutes=5)


def _heartbeat_row(beat: nodes_pb2.Heartbeat, now: datetime | None = None) -> dict[str, object]:
    """The nodes row of a heartbeat; ValueError when it cannot be one (untrusted input).

    A time more than ``HEARTBEAT_MAX_SKEW`` after ``now`` (default: the clock) is refused: a
    node row keeps only heartbeats at least as new as the one it has, so one dated in year
    9999 would pin the row, and every true heartbeat after it would be ignored."""
    for name, limit in (("node_id", 200), ("pool", 64), ("backend", 255), ("hostname", 255)):
        if len(getattr(beat, name)) > limit:
            raise ValueError(f"heartbeat {name} longer than {limit} characters")
    if not beat.node_id:
        raise ValueError("heartbeat without node_id")
    try:
        started, sent = beat.started_at.ToDatetime(UTC), beat.sent_at.ToDatetime(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"heartbeat with an impossible time: {exc}") from exc
    latest = (now or datetime.now(UTC)) + HEARTBEAT_MAX_SKEW
    for name, value in (("sent_at", sent), ("started_at", started)):
        if value > latest:
            raise ValueError(f"heartbeat {name} {value.isoformat()} is in the future")
    if not (0 <= beat.pid < 2**31):
        raise ValueError("heartbeat pid out of range")
    return {
        "id": beat.node_id,
        "pool": beat.pool,
        "backend": beat.backend,
        "hostname": beat.hostname,
        "pid": beat.pid,
        "state": NODE_STATES.get(beat.state, "UNKNOWN"),
        "started_at": started,
        "last_heartbeat_at": sent,
        "fragments_done": beat.fragments_done,
        "fragments_failed": beat.fragments_failed,
        "bindings_done": beat.bindings_done,
        "device": device_row(beat.device, latest) if beat.HasField("device") else None,
    }
