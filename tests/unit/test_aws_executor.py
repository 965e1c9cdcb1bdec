"""AwsDeviceExecutor at the boto3 boundary: no network, no mocks inside the Braket SDK.

A ``before-send`` hook on the boto3 session answers the HTTP requests the real SDK makes
(GetDevice, CreateQuantumTask, GetQuantumTask, CancelQuantumTask, S3 GetObject) the way the
Braket service would; task results are computed by the real local simulator.
"""

from __future__ import annotations

import io
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from braket.default_simulator import StateVectorSimulator
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from nodes.executors.aws import AwsDeviceExecutor
from nodes.executors.base import ExecutionError, Executor
from nodes.executors.factory import UnconfiguredExecutor, executor_for_pool, serving_executor
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BUCKET = "amazon-braket-qorch-test"
PREFIX = "runs/test"

PROGRAM = """OPENQASM 3.0;
input float a;
qubit[3] q;
ry(a) q[0];
cnot q[0], q[1];
rx(a) q[2];
"""


class _Body(io.BytesIO):
    """What botocore reads an HTTP response body from (``stream()`` and ``read()``)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _response(
    request: AWSPreparedRequest, status: int, body: bytes | dict[str, Any]
) -> AWSResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
    if status >= 400 and isinstance(body, dict):
        headers["x-amzn-ErrorType"] = body["__type"]
    return AWSResponse(request.url, status, headers, _Body(data))


def _plain(value: Any) -> Any:
    """numpy arrays and scalars in a result document, as JSON."""
    return value.tolist()


class FakeBraket:
    """The Braket and S3 endpoints as seen through one boto3 session."""

    def __init__(self, session: boto3.Session) -> None:
        self.created: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.objects: dict[tuple[str, str], bytes] = {}
        self.task_status = "COMPLETED"
        self.failure_reason = ""
        self.create_error: tuple[int, str] | None = None
        self.gets = 0
        self._tasks: dict[str, dict[str, Any]] = {}
        session.events.register("before-send.braket", self._braket)
        session.events.register("before-send.s3", self._s3)

    def _braket(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse:
        operation = event_name.rsplit(".", 1)[-1]
        path = unquote(urlparse(request.url).path)
        if operation == "GetDevice":
            return _response(request, 200, self._device())
        if operation == "CreateQuantumTask":
            return self._create(request)
        if operation == "GetQuantumTask":
            self.gets += 1
            arn = path.split("/quantum-task/", 1)[1]
            return _response(request, 200, {**self._tasks[arn], "status": self.task_status})
        if operation == "CancelQuantumTask":
            arn = path.split("/quantum-task/", 1)[1].rsplit("/cancel", 1)[0]
            self.cancelled.append(arn)
            return _response(
                request, 200, {"quantumTaskArn": arn, "cancellationStatus": "CANCELLING"}
            )
        raise AssertionError(f"unexpected Braket call {operation}")

    def _device(self) -> dict[str, Any]:
        return {
            "deviceArn": SV1,
            "deviceName": "SV1",
            "deviceType": "SIMULATOR",
            "deviceStatus": "ONLINE",
            "providerName": "Amazon Braket",
            "deviceCapabilities": LocalSimulator("braket_sv").properties.json(),
        }

    def _create(self, request: AWSPreparedRequest) -> AWSResponse:
        if self.create_error is not None:
            status, code = self.create_error
            return _response(request, status, {"__type": code, "message": f"{code} (fake)"})
        body = json.loads(request.body or b"{}")
        self.created.append(body)
        task_id = str(uuid.uuid4())
        arn = f"arn:aws:braket:us-west-2:123456789012:quantum-task/{task_id}"
        directory = f"{body['outputS3KeyPrefix']}/{task_id}"
        action = json.loads(body["action"])
        # What the service would write to S3: the simulator's result document.
        result = StateVectorSimulator().run(
            Program(source=action["source"], inputs=action.get("inputs") or {}), shots=body["shots"]
        )
        result.taskMetadata.id = arn
        if not result.measurements:  # the service leaves them out when nothing was sampled
            result.measurements = None
        document = json.dumps(result.dict(exclude_none=True), default=_plain).encode()
        self.objects[(body["outputS3Bucket"], f"{directory}/results.json")] = document
        self._tasks[arn] = {
            "quantumTaskArn": arn,
            "deviceArn": body["deviceArn"],
            "deviceParameters": body.get("deviceParameters", "{}"),
            "shots": body["shots"],
            "outputS3Bucket": body["outputS3Bucket"],
            "outputS3Directory": directory,
            "createdAt": "2026-01-01T00:00:00Z",
            "failureReason": self.failure_reason,
            "actionMetadata": {
                "actionType": json.loads(body["action"])["braketSchemaHeader"]["name"]
            },
        }
        return _response(request, 201, {"quantumTaskArn": arn})

    def _s3(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse:
        assert event_name.endswith(".GetObject"), event_name
        url = urlparse(request.url)
        bucket = url.netloc.split(".", 1)[0]
        key = unquote(url.path).lstrip("/")
        data = self.objects[(bucket, key)]
        return AWSResponse(request.url, 200, {"Content-Length": str(len(data))}, _Body(data))


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where boto3 finds no credentials anywhere, and does not ask EC2."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def fake_session(no_credentials: None, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    """A session with (fake) credentials that never reaches the network."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry back-off in error tests
    return boto3.Session(
        aws_access_key_id="AKIDTESTING",
        aws_secret_access_key="secret",
        region_name="us-west-2",
    )


def fragment(kind: int, observables: list[str] | None = None, shots: int = 0) -> pb.Fragment:
    return pb.Fragment(
        fragment_id="f-1",
        job_id="j-1",
        attempt=1,
        pool="aws-sv1",
        program=PROGRAM,
        bindings=[pb.Binding(values={"a": 0.4}), pb.Binding(values={"a": 2.2})],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=observables or [],
        qubits=3,
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuses and records every attempt to open a connection (the checks must not need one)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_without_credentials_it_fails_with_a_clear_message_and_no_network(
    no_credentials: None, no_network: list[object]
) -> None:
    with pytest.raises(ExecutionError) as info:
        AwsDeviceExecutor(SV1, BUCKET, PREFIX, "us-east-1", 60.0)

    assert no_network == []  # decided from the environment: no metadata service, no Braket call
    assert info.value.retryable is False
    assert info.value.error_type == "ConfigurationError"
    assert "AWS credentials were not found" in info.value.message
    for hint in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        assert hint in info.value.message


def test_every_missing_piece_is_named_at_once(
    no_credentials: None, no_network: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ExecutionError) as info:
        AwsDeviceExecutor(SV1, "", PREFIX, "", 60.0)
    message = info.value.message
    for hint in ("QORCH_AWS_S3_BUCKET", "AWS credentials were not found", "QORCH_AWS_REGION"):
        assert hint in message
    assert no_network == []


def test_factory_reports_missing_credentials_for_an_aws_pool(
    no_credentials: None, no_network: list[object]
) -> None:
    settings = Settings(aws_s3_bucket=BUCKET, aws_region="us-east-1")
    with pytest.raises(ExecutionError, match="AWS credentials were not found") as info:
        executor_for_pool("aws-sv1", settings)
    assert info.value.retryable is False
    assert no_network == []


def test_missing_bucket_fails_fast(fake_session: boto3.Session) -> None:
    with pytest.raises(ExecutionError, match="QORCH_AWS_S3_BUCKET") as info:
        AwsDeviceExecutor(SV1, "", PREFIX, "us-west-2", 60.0, boto_session=fake_session)
    assert info.value.retryable is False


def test_factory_pools(fake_session: boto3.Session) -> None:
    settings = Settings(aws_devices={"aws-mine": "arn:aws:braket:us-east-1::device/qpu/x/y"})
    assert executor_for_pool("local-sv", settings).name == "braket_sv"
    assert executor_for_pool("local-dm", settings).name == "braket_dm"
    with pytest.raises(
        ExecutionError,
        match=r"unknown AWS pool 'aws-nope' \(known: aws-dm1, aws-mine.*QORCH_AWS_DEVICES",
    ):
        executor_for_pool("aws-nope", settings)
    with pytest.raises(ValueError, match="unknown pool 'gpu'"):
        executor_for_pool("gpu", settings)


def test_an_unconfigured_aws_pool_is_served_by_an_executor_that_fails_each_fragment(
    no_credentials: None, no_network: list[object]
) -> None:
    executor = serving_executor("aws-sv1", Settings(aws_region="us-east-1"))

    assert isinstance(executor, UnconfiguredExecutor)
    assert executor.name == f"{SV1} (not configured)"
    with pytest.raises(ExecutionError) as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))
    assert info.value.retryable is False
    assert info.value.message.startswith("this node cannot run pool aws-sv1: ")
    assert "QORCH_AWS_S3_BUCKET" in info.value.message
    assert "AWS credentials were not found" in info.value.message
    with pytest.raises(ValueError, match="unknown pool 'gpu'"):
        serving_executor("gpu", Settings())
    assert no_network == []


def test_tasks_go_to_the_device_and_bucket_and_results_are_parsed(
    fake_session: boto3.Session,
) -> None:
    fake = FakeBraket(fake_session)
    executor = AwsDeviceExecutor(SV1, BUCKET, PREFIX, "", 60.0, boto_session=fake_session)
    assert isinstance(executor, Executor)
    assert executor.name == SV1
    frag = fragment(pb.RESULT_KIND_EXPECTATION, ["ZZI", "IIZ", "III"])

    results = executor.execute(frag)

    assert len(fake.created) == 2
    for request, binding in zip(fake.created, frag.bindings, strict=True):
        assert request["deviceArn"] == SV1
        assert (request["outputS3Bucket"], request["outputS3KeyPrefix"]) == (BUCKET, PREFIX)
        assert request["shots"] == 0
        action = json.loads(request["action"])
        assert action["inputs"] == dict(binding.values)
        assert "#pragma braket result expectation z(q[0]) @ z(q[1])" in action["source"]
    assert results == LocalExecutor("braket_sv").execute(frag)
    assert [r.expectations.values[2] for r in results] == [1.0, 1.0]


def test_probabilities_and_counts(fake_session: boto3.Session) -> None:
    FakeBraket(fake_session)
    executor = AwsDeviceExecutor(SV1, BUCKET, PREFIX, "", 60.0, boto_session=fake_session)
    local = LocalExecutor("braket_sv")

    probabilities = fragment(pb.RESULT_KIND_PROBABILITIES)
    assert executor.execute(probabilities) == local.execute(probabilities)
    counts = executor.execute(fragment(pb.RESULT_KIND_COUNTS, shots=100))
    assert [sum(r.counts.counts.values()) for r in counts] == [100, 100]


def test_a_failed_task_fails_for_good_with_the_service_reason(
    fake_session: boto3.Session,
) -> None:
    fake = FakeBraket(fake_session)
    fake.task_status = "FAILED"
    fake.failure_reason = "Unsupported gate foo"
    executor = AwsDeviceExecutor(SV1, BUCKET, PREFIX, "", 60.0, boto_session=fake_session)

    with pytest.raises(ExecutionError, match="Unsupported gate foo") as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))
    assert info.value.retryable is False
    assert info.value.error_type == "TaskFailed"


def test_unfinished_tasks_time_out_as_retryable_and_are_cancelled(
    fake_session: boto3.Session,
) -> None:
    fake = FakeBraket(fake_session)
    fake.task_status = "RUNNING"
    executor = AwsDeviceExecutor(
        SV1, BUCKET, PREFIX, "", 0.2, poll_interval_s=0.05, boto_session=fake_session
    )

    with pytest.raises(ExecutionError, match="did not finish") as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))
    assert info.value.retryable is True
    assert len(fake.cancelled) == 2


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, "ThrottlingException", True),
        (500, "InternalServiceException", True),
        (400, "ValidationException", False),
        (403, "AccessDeniedException", False),
    ],
)
def test_service_errors_say_whether_a_retry_can_help(
    fake_session: boto3.Session, status: int, code: str, retryable: bool
) -> None:
    fake = FakeBraket(fake_session)
    fake.create_error = (status, code)
    executor = AwsDeviceExecutor(SV1, BUCKET, PREFIX, "", 60.0, boto_session=fake_session)

    with pytest.raises(ExecutionError, match=code) as info:
        executor.execute(fragment(pb.RESULT_KIND_PROBABILITIES))
    assert info.value.retryable is retryable
    assert info.value.error_type == code
