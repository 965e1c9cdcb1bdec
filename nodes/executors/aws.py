"""Braket devices on AWS (QPUs and the managed simulators SV1, DM1, TN1), through the Braket SDK.

A fragment's bindings go as program sets where the device takes them (one task per chunk of
bindings within the device's limits), else as one quantum task per binding (several when
sampled observables cannot share one); :mod:`nodes.executors.submission` plans them. Every task
is created with a client token derived from the fragment, its attempt and the task's index, so
a fragment delivered again finds the tasks its first delivery created instead of paying twice.
Results are written to ``s3://<bucket>/<prefix>/`` and read back with this node's own S3 client.
Endpoints come from boto3's usual settings (``AWS_ENDPOINT_URL_BRAKET``, ``AWS_ENDPOINT_URL_S3``).

Credentials and the results bucket are checked when the executor is built, and every missing
piece is named in one :class:`ExecutionError`; the agent then serves the pool with an executor
that fails each fragment at once with that message (``nodes.executors.factory.serving_executor``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from braket.aws import AwsDevice, AwsSession
from braket.device_schema import DeviceActionType
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import ExecutionError
from nodes.executors.braket_results import (
    RESULTS_FILE,
    Reader,
    parse_result,
    program_set_outcomes,
)
from nodes.executors.local import prepared_work
from nodes.executors.sampled import Outcome
from nodes.executors.submission import Submission, TaskRequest, client_token, plan_submission
from nodes.program import TaskResult
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.program_sets import ProgramSetLimits

logger = logging.getLogger(__name__)

#: Task states after which nothing changes.
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

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
    ``poll_timeout_s`` bounds the wait for the next of a fragment's tasks to end: when none
    ends for that long, the unfinished ones are cancelled and the fragment fails as retryable.
    ``poll_interval_s`` is the time between polls (default: the device's own, else 1 s).
    ``boto_session`` replaces the default boto3 session.
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
        """Create every task of the fragment, wait for them all, and read their results back,
        one per binding, in order (:mod:`nodes.executors.submission` plans the tasks)."""
        prepared, inputs = prepared_work(fragment)
        if not prepared.runs:  # every observable is the identity
            return [prepared.binding_result([]) for _ in inputs]
        tasks: list[_Task] = []
        try:
            device = self._get_device()
            submission = plan_submission(fragment, prepared, inputs, program_set_limits(device))
            session = device.aws_session
            for index, request in enumerate(submission.requests):
                tasks.append(self._create(session, fragment, index, request))
            self._wait(tasks)
            results = self._results(submission, tasks)
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

    def _create(
        self, session: AwsSession, fragment: pb.Fragment, index: int, request: TaskRequest
    ) -> _Task:
        """CreateQuantumTask with the request's client token: the task already created for it,
        if there is one, else a new one."""
        arguments = request.create_arguments(self._arn, *self._destination)
        token = client_token(fragment.fragment_id, fragment.attempt, index, arguments)
        arn = session.create_quantum_task(**arguments, clientToken=token)
        logger.info(
            "Braket task %s for task %d of the fragment (%s, client token %s)",
            arn,
            index,
            "program set" if request.program_set else "one program",
            token,
            extra={"job_id": fragment.job_id, "fragment_id": fragment.fragment_id},
        )
        return _Task(arn, session)

    def _wait(self, tasks: list[_Task]) -> None:
        """Poll the tasks in order, each until it ends (one GetQuantumTask per interval, as
        later tasks usually end later); fail (retryable) when none ends for
        ``poll_timeout_s``."""
        interval = self._poll_interval_s
        if interval is None:
            service = self._get_device().properties.service
            millis = getattr(service, "getTaskPollIntervalMillis", None) or 0
            interval = millis / 1000.0 if millis else 1.0
        deadline = time.monotonic() + self._poll_timeout_s
        for task in tasks:
            while True:
                task.metadata = task.session.get_quantum_task(task.arn)
                if task.status in TERMINAL_STATES:
                    deadline = time.monotonic() + self._poll_timeout_s
                    break
                if time.monotonic() >= deadline:
                    unfinished = sum(1 for t in tasks if t.status not in TERMINAL_STATES)
                    raise ExecutionError(
                        f"Braket task {task.arn} did not finish within "
                        f"{self._poll_timeout_s:g} s (state {task.status}; {unfinished} of "
                        f"{len(tasks)} tasks unfinished)",
                        retryable=True,
                        error_type="TaskTimeout",
                    )
                time.sleep(interval)

    def _results(self, submission: Submission, tasks: list[_Task]) -> list[TaskResult]:
        """Every run of every binding, binding-major, from the ended tasks' result files."""
        slots: list[TaskResult | None] = [None] * (
            submission.bindings * submission.runs_per_binding
        )
        for task, request in zip(tasks, submission.requests, strict=True):
            _check_ended(task)
            read = _s3_reader(task.session)
            bucket = str(task.metadata["outputS3Bucket"])
            folder = str(task.metadata["outputS3Directory"])
            result = parse_result(read(bucket, f"{folder}/{RESULTS_FILE}"))
            if isinstance(result, GateModelQuantumTaskResult):
                (entry,) = request.entries
                slots[submission.slot(entry.bindings[0], entry.run)] = result
            else:
                programs = program_set_outcomes(result, read, task.arn)
                _place_program_set(submission, request, programs, slots, task.arn)
        missing = [i for i, r in enumerate(slots) if r is None]
        if missing:
            raise ExecutionError(
                f"no Braket result for {len(missing)} runs of the fragment",
                retryable=False,
                error_type="UnexpectedResult",
            )
        return [r for r in slots if r is not None]

    def close(self) -> None:
        """Drop the device handle; boto3 sessions hold nothing that needs closing."""
        self._device = None


@dataclass
class _Task:
    """A created task and what GetQuantumTask last said of it."""

    arn: str
    session: AwsSession
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The last known status; empty before the first poll."""
        return str(self.metadata.get("status", ""))


def _place_program_set(
    submission: Submission,
    request: TaskRequest,
    programs: list[list[Outcome]],
    slots: list[TaskResult | None],
    arn: str,
) -> None:
    """Put each executable's result where its binding and run go."""
    if submission.sampled is None or len(programs) != len(request.entries):
        raise ExecutionError(
            f"Braket task {arn} returned {len(programs)} programs' results for a task of "
            f"{len(request.entries) if request.program_set else 'no'} program set programs",
            retryable=False,
            error_type="UnexpectedResult",
        )
    for entry, outcomes in zip(request.entries, programs, strict=True):
        if len(outcomes) != len(entry.bindings):
            raise ExecutionError(
                f"Braket task {arn} returned {len(outcomes)} results for a program of "
                f"{len(entry.bindings)} executables",
                retryable=False,
                error_type="UnexpectedResult",
            )
        run = submission.sampled[entry.run]
        for binding, outcome in zip(entry.bindings, outcomes, strict=True):
            slots[submission.slot(binding, entry.run)] = run.result(outcome)


def _s3_reader(session: AwsSession) -> Reader:
    """Reads S3 objects with the session's one S3 client (the SDK's own reader builds a new
    client for every object)."""
    client = session.s3_client

    def read(bucket: str, key: str) -> str:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return str(body.decode("utf-8"))

    return read


def program_set_limits(device: AwsDevice) -> ProgramSetLimits | None:
    """The device's program-set limits; None where it does not take program sets."""
    action = device.properties.action.get(DeviceActionType.OPENQASM_PROGRAM_SET)
    if action is None:
        return None
    return ProgramSetLimits(
        max_executables=int(action.maximumExecutables),
        max_total_shots=int(action.maximumTotalShots),
        min_total_shots=int(getattr(action, "minimumTotalShots", None) or 0),
    )


def _check_ended(task: _Task) -> None:
    """Raise for a task that ended without results."""
    if task.status == "FAILED":
        reason = task.metadata.get("failureReason") or "no reason given"
        raise ExecutionError(
            f"Braket task {task.arn} failed: {reason}", retryable=False, error_type="TaskFailed"
        )
    if task.status == "CANCELLED":
        raise ExecutionError(
            f"Braket task {task.arn} was cancelled", retryable=True, error_type="TaskCancelled"
        )


def _cancel_unfinished(tasks: list[_Task]) -> None:
    """Best effort: do not leave paid tasks running for a fragment that failed."""
    for task in tasks:
        if task.status in TERMINAL_STATES:
            continue
        try:
            task.session.cancel_quantum_task(task.arn)
        except Exception as exc:  # cancelling is a courtesy; the failure is reported anyway
            logger.warning("could not cancel Braket task %s: %s", task.arn, exc)


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
