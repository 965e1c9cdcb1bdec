"""Braket devices on AWS (QPUs and the managed simulators SV1, DM1, TN1), through the Braket SDK.

A fragment's bindings go as program sets where the device takes them (one task per chunk of
bindings within the device's limits), else as one quantum task per binding (several when
sampled observables cannot share one); :mod:`nodes.executors.submission` plans them. Every task
is created with a client token derived from the fragment, the task's index, its request and a
generation (1 but for the replacement of a cancelled task), so a fragment delivered again, or
dispatched again, finds the tasks an earlier delivery created instead of paying twice. Before
it waits, the executor reports the tasks (their ARNs) through the agent, which records them with
the orchestrator; a fragment dispatched again carries them, and the tasks whose client token
still names the same request are resumed (polled, their results read) without a
CreateQuantumTask at all (docs/qpu.md, "Idempotent submission"). ``cancel_tasks`` cancels tasks
on the orchestrator's request. With a ``reservation_arn`` (Braket Direct), every task is
created in that reservation (CreateQuantumTask ``associations``), as ``AwsDevice.run``'s
``reservation_arn`` does. ``device_state`` reads the device's status, queue depth and execution
windows for the agent's heartbeats.
Results are written to ``s3://<bucket>/<prefix>/`` and read back with this node's own S3 client.
Endpoints come from boto3's usual settings (``AWS_ENDPOINT_URL_BRAKET``, ``AWS_ENDPOINT_URL_S3``).

Credentials and the results bucket are checked when the executor is built, and every missing
piece is named in one :class:`ExecutionError`; the agent then serves the pool with an executor
that fails each fragment at once with that message (``nodes.executors.factory.serving_executor``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from braket.aws.queue_information import QueueType
from braket.device_schema import DeviceActionType
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import Abandoned, ExecutionError, SubmittedTask, TaskReporter, Used
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
from proto.qorch.v1 import nodes_pb2
from qorchestra.device_status import Window, device_message, queue_count, seconds_after_midnight
from qorchestra.metrics import NODE_QUANTUM_TASKS
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
    ``boto_session`` replaces the default boto3 session. ``reservation_arn``: the Braket
    reservation every task runs in (None: none).
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
        reservation_arn: str | None = None,
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
        self._reservation_arn = reservation_arn or None
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
        self._lock = threading.Lock()  # guards the two below: the cancel thread uses them too
        self._braket: AwsSession | None = None
        self._device: AwsDevice | None = None
        #: What the last fragment that succeeded used (``Metered``).
        self.last_usage: Used | None = None

    @property
    def name(self) -> str:
        """The device ARN."""
        return self._arn

    @property
    def s3_destination(self) -> tuple[str, str]:
        """``(bucket, prefix)`` that receives the task results."""
        return self._destination

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Create (or resume) every task of the fragment, wait for them all, and read their
        results back, one per binding, in order; the tasks are reported to nobody."""
        return self.execute_tasks(fragment, None)

    def execute_tasks(
        self, fragment: pb.Fragment, reporter: TaskReporter | None
    ) -> list[pb.BindingResult]:
        """Resume the tasks the fragment carries and create the others
        (:mod:`nodes.executors.submission` plans them), report them all through ``reporter``
        before waiting, wait for them, and read their results back, one per binding, in order.

        A failure cancels the unfinished tasks; :class:`Abandoned` (the agent stopped while
        waiting) leaves them running for the next delivery or attempt to resume."""
        self.last_usage = None
        prepared, inputs = prepared_work(fragment)
        if not prepared.runs:  # every observable is the identity
            self.last_usage = Used(0, 0)
            return [prepared.binding_result([]) for _ in inputs]
        tasks: list[_Task] = []
        try:
            device = self._get_device()
            submission = plan_submission(fragment, prepared, inputs, program_set_limits(device))
            self._submit(device.aws_session, fragment, submission, tasks)
            if reporter is not None:
                reporter.submitted(self._arn, [t.submitted() for t in tasks])
            self._wait(tasks, reporter)
            results = self._results(submission, tasks)
        except Abandoned:
            raise
        except ExecutionError:
            _cancel_unfinished(tasks)
            raise
        except Exception as exc:
            _cancel_unfinished(tasks)
            raise _as_execution_error(exc) from exc
        outcome = prepared.binding_results(results)
        self.last_usage = submission_usage(submission, fragment.shots)
        return outcome

    def cancel_tasks(self, arns: Sequence[str]) -> int:
        """CancelQuantumTask for each ARN (best effort: a task that has ended, or is unknown,
        is logged and skipped); returns how many cancels Braket accepted. Safe to call from
        another thread than ``execute``'s."""
        session = self._aws_session()
        accepted = 0
        for arn in arns:
            try:
                session.cancel_quantum_task(arn)
            except Exception as exc:
                logger.warning("could not cancel Braket task %s: %s", arn, exc)
                continue
            accepted += 1
            NODE_QUANTUM_TASKS.labels("cancelled").inc()
            logger.info("Braket task %s cancelled on request", arn)
        return accepted

    def device_state(self) -> nodes_pb2.DeviceState:
        """The device's status and execution windows (GetDevice) and its queue depth
        (``AwsDevice.queue_depth``: GetDevice again), read now with a device handle of its
        own (``execute`` keeps using its own). A queue Braket does not describe is left out."""
        device = AwsDevice(self._arn, aws_session=self._aws_session())
        windows = [
            Window(
                str(getattr(w.executionDay, "value", w.executionDay)),
                seconds_after_midnight(w.windowStartHour),
                seconds_after_midnight(w.windowEndHour),
            )
            for w in device.properties.service.executionWindows or []
        ]
        queue: tuple[int, int, int] | None = None
        try:
            depth = device.queue_depth()
            tasks = depth.quantum_tasks
            queue = (
                queue_count(tasks.get(QueueType.NORMAL, 0)),
                queue_count(tasks.get(QueueType.PRIORITY, 0)),
                queue_count(depth.jobs),
            )
        except (TypeError, ValueError, AttributeError) as exc:  # no or odd deviceQueueInfo
            logger.info("no queue depth for %s: %s", self._arn, exc)
        return device_message(
            str(device.status), queue=queue, windows=windows, observed_at=datetime.now(UTC)
        )

    def _aws_session(self) -> AwsSession:
        """The one Braket session (its clients are thread-safe; making them is not)."""
        with self._lock:
            if self._braket is None:
                self._braket = AwsSession(self._session)
            return self._braket

    def _get_device(self) -> AwsDevice:
        session = self._aws_session()
        with self._lock:
            if self._device is None:
                try:
                    self._device = AwsDevice(self._arn, aws_session=session)
                except ValueError as exc:  # the SDK's "device not found"
                    raise ExecutionError(
                        str(exc), retryable=False, error_type="DeviceNotFound"
                    ) from exc
            return self._device

    def _submit(
        self,
        session: AwsSession,
        fragment: pb.Fragment,
        submission: Submission,
        tasks: list[_Task],
    ) -> None:
        """Append every task of the fragment to ``tasks``, in order: the one the fragment
        carries for an index when it is the same request and was not cancelled (resumed),
        else a new one (created: generation 1, or one more than the carried task's). A
        carried task that computes something this plan does not ask for is cancelled, once
        every task is known (never one that serves)."""
        carried = {task.index: task for task in fragment.tasks}  # the latest of each index
        extra = {"job_id": fragment.job_id, "fragment_id": fragment.fragment_id}
        unwanted: list[str] = []
        for index, request in enumerate(submission.requests):
            arguments = request.create_arguments(
                self._arn, *self._destination, reservation_arn=self._reservation_arn
            )
            earlier = carried.pop(index, None)
            if earlier is None:
                tasks.append(self._create(session, fragment, index, arguments, request, 1))
                continue
            resumed = self._resume(session, fragment, index, arguments, earlier, unwanted)
            tasks.append(
                resumed
                or self._create(
                    session, fragment, index, arguments, request, earlier.generation + 1
                )
            )
        for stray in carried.values():
            logger.warning(
                "recorded Braket task %s (task %d) is not in this fragment's plan of %d tasks",
                stray.arn,
                stray.index,
                len(submission.requests),
                extra=extra,
            )
            unwanted.append(stray.arn)
        serving = {task.arn for task in tasks}
        for arn in unwanted:
            if arn not in serving:
                logger.warning("cancelling Braket task %s: nothing uses it", arn, extra=extra)
                _cancel(session, arn)

    def _resume(
        self,
        session: AwsSession,
        fragment: pb.Fragment,
        index: int,
        arguments: dict[str, Any],
        earlier: pb.QuantumTask,
        unwanted: list[str],
    ) -> _Task | None:
        """The task an earlier delivery or attempt created for task ``index``, polled once;
        None when it cannot serve: made for another request (its client token says so: it
        goes to ``unwanted``), unknown to Braket, on another device, or cancelled."""
        extra = {"job_id": fragment.job_id, "fragment_id": fragment.fragment_id}
        token = client_token(fragment.fragment_id, earlier.generation, index, arguments)
        if token != earlier.client_token:
            logger.warning(
                "recorded Braket task %s was made for another request than task %d is now "
                "(the plan changed); creating a new one",
                earlier.arn,
                index,
                extra=extra,
            )
            unwanted.append(earlier.arn)
            return None
        try:
            metadata = session.get_quantum_task(earlier.arn)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("ResourceNotFoundException", "ValidationException"):
                raise
            logger.warning(
                "recorded Braket task %s is unknown to Braket (%s); creating a new one",
                earlier.arn,
                code,
                extra=extra,
            )
            return None
        status = str(metadata.get("status", ""))
        if metadata.get("deviceArn") != self._arn:
            logger.warning(
                "recorded Braket task %s runs on %s, not on %s; creating a new one",
                earlier.arn,
                metadata.get("deviceArn"),
                self._arn,
                extra=extra,
            )
            return None
        if status in ("CANCELLING", "CANCELLED"):
            logger.warning(
                "recorded Braket task %s was cancelled; creating a new one for task %d",
                earlier.arn,
                index,
                extra=extra,
            )
            return None
        NODE_QUANTUM_TASKS.labels("resumed").inc()
        logger.info(
            "Braket task %s resumed for task %d of the fragment (%s)",
            earlier.arn,
            index,
            status,
            extra=extra,
        )
        return _Task(
            earlier.arn, session, index, earlier.client_token, earlier.generation, metadata
        )

    def _create(
        self,
        session: AwsSession,
        fragment: pb.Fragment,
        index: int,
        arguments: dict[str, Any],
        request: TaskRequest,
        generation: int,
    ) -> _Task:
        """CreateQuantumTask with the request's client token in ``generation``: the task
        already created for it, if there is one, else a new one."""
        token = client_token(fragment.fragment_id, generation, index, arguments)
        arn = session.create_quantum_task(**arguments, clientToken=token)
        NODE_QUANTUM_TASKS.labels("created").inc()
        logger.info(
            "Braket task %s for task %d of the fragment (%s, client token %s)",
            arn,
            index,
            "program set" if request.program_set else "one program",
            token,
            extra={"job_id": fragment.job_id, "fragment_id": fragment.fragment_id},
        )
        return _Task(arn, session, index, token, generation)

    def _wait(self, tasks: list[_Task], reporter: TaskReporter | None = None) -> None:
        """Poll the tasks in order, each until it ends (one GetQuantumTask per interval, as
        later tasks usually end later); fail (retryable) when none ends for
        ``poll_timeout_s``. With a ``reporter``: report the tasks every
        ``reporter.interval_s``, and raise :class:`Abandoned` once the agent is stopping."""
        interval = self._poll_interval_s
        if interval is None:
            service = self._get_device().properties.service
            millis = getattr(service, "getTaskPollIntervalMillis", None) or 0
            interval = millis / 1000.0 if millis else 1.0
        deadline = time.monotonic() + self._poll_timeout_s
        next_report = time.monotonic() + (reporter.interval_s if reporter else 0.0)
        for task in tasks:
            while True:
                if task.status not in TERMINAL_STATES:  # a resumed task may have ended
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
                if reporter is not None:
                    if reporter.stopping():
                        raise Abandoned(
                            f"stopped while waiting on {len(tasks)} Braket tasks; they keep "
                            "running for the fragment's next attempt to resume"
                        )
                    if time.monotonic() >= next_report:
                        reporter.waiting(self._arn, [t.submitted() for t in tasks])
                        next_report = time.monotonic() + reporter.interval_s
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
        with self._lock:
            self._device = None


@dataclass
class _Task:
    """A created (or resumed) task and what GetQuantumTask last said of it."""

    arn: str
    session: AwsSession
    index: int = 0
    client_token: str = ""
    generation: int = 1  # of its client token
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The last known status; empty before the first poll."""
        return str(self.metadata.get("status", ""))

    def submitted(self) -> SubmittedTask:
        """The task as the agent reports it."""
        return SubmittedTask(self.index, self.arn, self.client_token, self.generation, self.status)


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


def submission_usage(submission: Submission, shots: int) -> Used:
    """What a fragment's tasks use: one task per request, ``shots`` for each of their
    executables (a program set's executables are each sampled ``shots`` times)."""
    executables = sum(
        len(entry.bindings) for request in submission.requests for entry in request.entries
    )
    return Used(tasks=len(submission.requests), shots=executables * shots)


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
        if task.status not in TERMINAL_STATES:
            _cancel(task.session, task.arn)


def _cancel(session: AwsSession, arn: str) -> None:
    """CancelQuantumTask, best effort: cancelling is a courtesy, a failure is only logged."""
    try:
        session.cancel_quantum_task(arn)
    except Exception as exc:
        logger.warning("could not cancel Braket task %s: %s", arn, exc)
        return
    NODE_QUANTUM_TASKS.labels("cancelled").inc()


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
