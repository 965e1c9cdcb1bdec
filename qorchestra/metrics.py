"""Prometheus counters of every service, and the ``/metrics`` endpoint of the ones without HTTP.

Each service is its own process, so each exposes only the counters it moves: the orchestrator
its redispatches, retries, dead letters and dropped duplicates; an agent its fragments,
redeliveries and publish retries; the API its answers while a dependency is down. The API mounts
``/metrics`` on its own app; the orchestrator and agents serve it on ``QORCH_METRICS_PORT``.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, start_http_server

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- orchestrator

RESULTS = Counter(
    "qorch_results_total",
    "Fragment results, by outcome (counted, duplicate, late, stale, retried, failed, unknown; "
    "malformed and rejected messages are dropped), and reports of a fragment's quantum tasks "
    "(submitted: tasks recorded for the first time; progress: a report of known tasks).",
    ["outcome"],
)
HEARTBEATS = Counter(
    "qorch_heartbeats_total",
    "Heartbeat messages, by outcome (saved, malformed, rejected).",
    ["outcome"],
)
BUS_REJECTED = Counter(
    "qorch_bus_rejected_total",
    "Messages on results, heartbeats and events dropped unread because their proof of origin "
    "failed, by topic and reason (malformed, unsigned, unknown_signer, revoked, "
    "bad_signature, wrong_pool, wrong_nonce, node_taken).",
    ["topic", "reason"],
)
DUPLICATES_DROPPED = Counter(
    "qorch_duplicates_dropped_total",
    "Results dropped because their fragment was already counted (redelivery or retry).",
)
REDISPATCHES = Counter(
    "qorch_redispatches_total",
    "Fragments dispatched again as a new attempt, by reason (timeout, failure).",
    ["reason"],
)
RETRIES = Counter(
    "qorch_retries_total",
    "Fragment executions that failed with a retryable error and were retried.",
)
DEAD_LETTERS = Counter(
    "qorch_dead_letters_total",
    "Fragments sent to fragments.dlq, by where (orchestrator: failed for good; node: malformed).",
    ["source"],
)
RESENT = Counter(
    "qorch_fragments_resent_total",
    "Unanswered fragments sent again, same attempt, after the broker lost its state.",
)
BROKER_RESETS = Counter(
    "qorch_broker_resets_total", "Times the orchestrator found its topics gone and made them again."
)
PUBLISHED = Counter("qorch_fragments_published_total", "Outbox messages the relay published.")
DB_RETRIES = Counter(
    "qorch_db_retries_total", "Database calls retried after the database was unreachable."
)

# ---------------------------------------------------------------- node agent

SPEND = Counter(
    "qorch_spend_usd_total",
    "Actual cost in USD of fragments counted on paid pools (aws-*, emu-*), as agents reported "
    "it and the orchestrator checked it; counted once per fragment, by the process that "
    "applied it.",
    ["tenant", "pool"],
)
NODE_FRAGMENTS = Counter(
    "qorch_node_fragments_total", "Fragments an agent executed, by outcome.", ["outcome"]
)
NODE_REDELIVERIES = Counter(
    "qorch_node_redeliveries_total",
    "Fragment messages this agent process had already received (same fragment and attempt), "
    "e.g. when a rebalance hands a partition back before its offset was committed. "
    "Kafka keeps no delivery count: a fragment another agent received before it died is a "
    "first delivery here (its trace is qorch_duplicates_dropped_total on the orchestrator).",
)
PUBLISH_RETRIES = Counter(
    "qorch_publish_retries_total", "Sends retried because the broker did not acknowledge them."
)
NODE_QUANTUM_TASKS = Counter(
    "qorch_node_quantum_tasks_total",
    "Paid quantum tasks of the fragments an agent ran, by how it got each (created: a new "
    "CreateQuantumTask; resumed: recorded by an earlier delivery or attempt, polled instead of "
    "created again) or what it did to it (cancelled: on the orchestrator's request or because "
    "its fragment failed).",
    ["how"],
)

# ---------------------------------------------------------------- API

API_UNAVAILABLE = Counter(
    "qorch_api_unavailable_total",
    "Requests answered 503 because a dependency was down, by dependency.",
    ["dependency"],
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` in a daemon thread; 0 means off."""
    if port == 0:
        return
    start_http_server(port, addr=host)
    logger.info("metrics served", extra={"metrics_port": port})
