"""Conversion of stored job events to the ``JobEvent`` protobuf (Kafka and gRPC share it)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from orchestrator.store.models import JobEventRow
from proto.qorch.v1 import jobs_pb2

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
