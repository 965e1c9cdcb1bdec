"""The Python SDK: ``Client`` and ``AsyncClient``, typed answers and errors (docs/sdk.md).

    from qorch.client import Client

    with Client() as client:  # QORCH_API_URL, QORCH_API_KEY, QORCH_GRPC_TARGET
        job = client.submit(circuit, observables=["ZZ"], bindings=[{"theta": 0.5}])
        print(job.wait(timeout=60).result().values)

It needs only ``httpx``, ``grpcio`` and ``protobuf`` (and ``qiskit`` to submit Qiskit
circuits); it never imports the server side or Braket.
"""

from qorch.client._async import AsyncClient, AsyncJob
from qorch.client._compat import QorchClient
from qorch.client._config import ClientConfig
from qorch.client._errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    FieldError,
    Forbidden,
    GatewayTimeout,
    NotFound,
    PayloadTooLarge,
    QorchError,
    RateLimited,
    ServerError,
    Timeout,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
    format_detail,
)
from qorch.client._models import (
    ApiKey,
    Checkpoint,
    Cost,
    CreatedKey,
    Dataset,
    EnrolledNode,
    JobEvent,
    JobResult,
    JobStatus,
    Metric,
    Metrics,
    Node,
    NodeCredential,
    Page,
    Pool,
    Prediction,
    Predictions,
    Progress,
    Readiness,
    RotatedAdminKey,
    Tenant,
    Timings,
)
from qorch.client._sync import Client, Job

__all__ = [
    "ApiError",
    "ApiKey",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Checkpoint",
    "Client",
    "ClientConfig",
    "Conflict",
    "ConnectionFailed",
    "Cost",
    "CreatedKey",
    "Dataset",
    "EnrolledNode",
    "FieldError",
    "Forbidden",
    "GatewayTimeout",
    "Job",
    "JobEvent",
    "JobResult",
    "JobStatus",
    "Metric",
    "Metrics",
    "Node",
    "NodeCredential",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Pool",
    "Prediction",
    "Predictions",
    "Progress",
    "QorchClient",
    "QorchError",
    "RateLimited",
    "Readiness",
    "RotatedAdminKey",
    "ServerError",
    "Tenant",
    "Timeout",
    "Timings",
    "Unauthenticated",
    "Unavailable",
    "ValidationFailed",
    "format_detail",
]
