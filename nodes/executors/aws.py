"""Braket devices on AWS (QPUs and the managed simulators SV1, DM1, TN1), through the Braket SDK.

Each binding becomes one quantum task (several when sampled observables cannot share one) whose
results Braket writes to ``s3://<bucket>/<prefix>/``. Credentials and the results bucket are
checked when the executor is built, and every missing piece is named in one
:class:`ExecutionError`; the agent then serves the pool with an executor that fails each
fragment at once with that message (``nodes.executors.factory.serving_executor``).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from braket.aws import AwsDevice, AwsQuantumTask, AwsSession
from braket.ir.openqasm import Program
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import ExecutionError
from nodes.executors.local import binding_inputs
from nodes.program import ProgramError, prepare_fragment
from proto.qorch.v1 import fragments_pb2 as pb

logger = logging.getLogger(__name__)

CREDENTIALS_HELP = (
    "AWS credentials were not found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(plus AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE naming a profile in "
    "~/.aws/credentials or ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE), "
    "or run the node where an IAM role provides them"
)

#: Braket and S3 error codes after which trying again later may succeed.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceQuotaExceededException",
        "InternalServiceException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "DeviceOfflineException",
        "RequestTimeout",
        "SlowDown",
    }
)


class AwsDeviceExecutor:
    """Runs fragments on one Braket device, results to ``s3://s3_bucket/s3_prefix``.

    ``region`` defaults to the device ARN's region (QPUs), then to boto3's configured region.
    ``poll_timeout_s`` bounds the wait for each task; a task still unfinished then is cancelled
    and the fragment fails as retryable. ``boto_session`` replaces the default boto3 session.
    """

    def __init__(
        self,
        device_arn: str,
        s3_bucket: str,
        s3_prefix: str = "qorchestra",
        region: str = "",
        poll_timeout_s: float = 3600.0,
        *,
        poll_interval_s: float | None = None,
        boto_session: boto3.Session | None = None,
    ) -> None:
        problems: list[str] = []
        if not device_arn:
            problems.append(
                "no Braket device ARN for this pool: map the pool to one with QORCH_AWS_DEVICES "
                '(e.g. \'{"aws-mine": "arn:aws:braket:us-east-1::device/qpu/..."}\')'
            )
        if not s3_bucket:
            problems.append(
                f"no S3 bucket for the results of Braket device {device_arn or '(none)'}: set "
                "QORCH_AWS_S3_BUCKET (and optionally QORCH_AWS_S3_PREFIX)"
            )
        self._arn = device_arn
        self._destination = (s3_bucket, s3_prefix.strip("/") or "qorchestra")
        self._poll_timeout_s = poll_timeout_s
        self._poll_interval_s = poll_interval_s
        device_region = AwsDevice.get_device_region(device_arn) if device_arn else ""
        session = boto_session or boto3.Session(region_name=region or device_region or None)
        if session.get_credentials() is None:
            problems.append(CREDENTIALS_HELP)
        if not session.region_name:
            problems.append(
                f"no AWS region for Braket device {device_arn or '(none)'}: set "
                "QORCH_AWS_REGION or AWS_DEFAULT_REGION"
            )
        if problems:
            # Every missing piece at once: fixing one should not reveal the next on restart.
            raise ExecutionError(
                "; ".join(problems), retryable=False, error_type="ConfigurationError"
            )
        self._session = session
        self._device: AwsDevice | None = None

    @property
    def name(self) -> str:
        """The device ARN."""
        return self._arn

    @property
    def s3_destination(self) -> tuple[str, str]:
        """``(bucket, prefix)`` that receives the task results."""
        return self._destination

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Create every task of the fragment, then wait for their results, in order."""
        try:
            prepared = prepare_fragment(fragment)
        except ProgramError as exc:
            raise ExecutionError(str(exc), retryable=False, error_type="ProgramError") from exc
        inputs = [binding_inputs(b, i) for i, b in enumerate(fragment.bindings)]
        if not prepared.runs:  # every observable is the identity
            return [prepared.binding_result([]) for _ in inputs]
        tasks: list[AwsQuantumTask] = []
        try:
            device = self._get_device()
            for values in inputs:
                for run in prepared.runs:
                    task = device.run(
                        Program(source=run.source, inputs=values),
                        s3_destination_folder=self._destination,
                        shots=fragment.shots,
                        poll_timeout_seconds=self._poll_timeout_s,
                        poll_interval_seconds=self._poll_interval_s,
                    )
                    tasks.append(task)
                    logger.debug(
                        "created Braket task %s",
                        task.id,
                        extra={"job_id": fragment.job_id, "fragment_id": fragment.fragment_id},
                    )
            results = [self._result(task) for task in tasks]
        except ExecutionError:
            _cancel_unfinished(tasks)
            raise
        except Exception as exc:
            _cancel_unfinished(tasks)
            raise _as_execution_error(exc) from exc
        return prepared.binding_results(results)

    def _get_device(self) -> AwsDevice:
        if self._device is None:
            try:
                self._device = AwsDevice(self._arn, aws_session=AwsSession(self._session))
            except ValueError as exc:  # the SDK's "device not found"
                raise ExecutionError(
                    str(exc), retryable=False, error_type="DeviceNotFound"
                ) from exc
        return self._device

    def _result(self, task: AwsQuantumTask) -> GateModelQuantumTaskResult:
        result = task.result()
        if isinstance(result, GateModelQuantumTaskResult):
            return result
        if result is not None:
            raise ExecutionError(
                f"Braket task {task.id} returned {type(result).__name__}, not a gate-model result",
                retryable=False,
                error_type="UnexpectedResult",
            )
        state = task.state()
        if state == "FAILED":
            reason = task.metadata(use_cached_value=True).get("failureReason", "no reason given")
            raise ExecutionError(
                f"Braket task {task.id} failed: {reason}", retryable=False, error_type="TaskFailed"
            )
        if state == "CANCELLED":
            raise ExecutionError(
                f"Braket task {task.id} was cancelled", retryable=True, error_type="TaskCancelled"
            )
        raise ExecutionError(
            f"Braket task {task.id} did not finish within {self._poll_timeout_s:g} s "
            f"(state {state})",
            retryable=True,
            error_type="TaskTimeout",
        )

    def close(self) -> None:
        """Drop the device handle; boto3 sessions hold nothing that needs closing."""
        self._device = None


def _cancel_unfinished(tasks: list[AwsQuantumTask]) -> None:
    """Best effort: do not leave paid tasks running for a fragment that failed."""
    for task in tasks:
        try:
            if task.state(use_cached_value=True) not in AwsQuantumTask.TERMINAL_STATES:
                task.cancel()
        except Exception as exc:  # cancelling is a courtesy; the failure is reported anyway
            logger.warning("could not cancel Braket task %s: %s", task.id, exc)


def _as_execution_error(exc: Exception) -> ExecutionError:
    """Whether a retry can help, from the kind of SDK or service error."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ExecutionError(CREDENTIALS_HELP, retryable=False, error_type=type(exc).__name__)
    if isinstance(exc, NoRegionError):
        return ExecutionError(
            "no AWS region: set QORCH_AWS_REGION", retryable=False, error_type="NoRegionError"
        )
    if isinstance(exc, ClientError):
        error: dict[str, Any] = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return ExecutionError(
            f"{code}: {error.get('Message') or exc}",
            retryable=code in RETRYABLE_CODES or status >= 500,
            error_type=code,
        )
    if isinstance(exc, BotoCoreError):  # connection trouble, timeouts
        return ExecutionError(str(exc), retryable=True, error_type=type(exc).__name__)
    if isinstance(exc, ValueError | TypeError):
        return ExecutionError(str(exc), retryable=False, error_type=type(exc).__name__)
    return ExecutionError(
        str(exc) or type(exc).__name__, retryable=True, error_type=type(exc).__name__
    )
