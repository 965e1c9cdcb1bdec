"""Stored job events on the wire: the ``JobEvent`` protobuf (Kafka and gRPC share it), and the
one way every process announces committed events on the ``events`` topic."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from proto.qorch.v1 import jobs_pb2
from qorchestra.config import Settings
from qorchestra.kafka import Producer
from qorchestra.signing import ControlPlaneSigner
from qorchestra.store.models import JobEventRow

STATUS_TO_PROTO = {
    "QUEUED": jobs_pb2.JOB_STATUS_QUEUED,
    "RUNNING": jobs_pb2.JOB_STATUS_RUNNING,
    "SUCCEEDED": jobs_pb2.JOB_STATUS_SUCCEEDED,
    "FAILED": jobs_pb2.JOB_STATUS_FAILED,
    "CANCELLING": jobs_pb2.JOB_STATUS_CANCELLING,
    "CANCELLED": jobs_pb2.JOB_STATUS_CANCELLED,
}


def event_to_proto(row: JobEventRow) -> jobs_pb2.JobEvent:
    """The wire form of one stored event."""
    at = Timestamp()
    if row.created_at is not None:
        at.FromDatetime(row.created_at)
    return jobs_pb2.JobEvent(
        job_id=row.job_id,
        seq=row.seq,
        type=row.type,
        status=STATUS_TO_PROTO[row.status],
        message=row.message,
        fragments_done=row.fragments_done,
        fragments_total=row.fragments_total,
        bindings_done=row.bindings_done,
        bindings_total=row.bindings_total,
        at=at,
        metrics=row.metrics or {},
    )


def publish_events(
    producer: Producer,
    settings: Settings,
    signer: ControlPlaneSigner,
    rows: Iterable[JobEventRow],
) -> None:
    """Announce events on the ``events`` topic, keyed by job id and signed by the control
    plane, after the transaction that stored them committed (a watcher that misses one
    re-reads Postgres, the truth)."""
    topic = settings.topic("events")
    for row in rows:
        producer.send(topic, row.job_id, signer.seal(event_to_proto(row)))
