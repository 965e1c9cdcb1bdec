"""AwsDeviceExecutor's configuration checks: decided from the environment, with no network.

Running fragments against Braket's API and S3 over HTTP is in
``tests/integration/test_braket_tasks.py``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from nodes.executors.aws import AwsDeviceExecutor
from nodes.executors.base import ExecutionError
from nodes.executors.factory import UnconfiguredExecutor, executor_for_pool, serving_executor
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
