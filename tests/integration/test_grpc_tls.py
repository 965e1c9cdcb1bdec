"""The gRPC server speaks TLS when given a certificate, and the client verifies it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from proto.qorch.v1 import jobs_pb2, jobs_pb2_grpc
from qorch.client import QorchClient
from qorchestra.config import Settings
from tests.support.api import RunningApi, running_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def api(
    database_url: str, kafka_bootstrap: str, certificate: tuple[Path, Path]
) -> Iterator[RunningApi]:
    cert, key = certificate
    with running_api(
        database_url,
        kafka_bootstrap,
        grpc_tls_cert_file=str(cert),
        grpc_tls_key_file=str(key),
    ) as running:
        yield running


def _get_unknown_job(channel: grpc.Channel, key: str) -> grpc.StatusCode:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    try:
        stub.GetJob(
            jobs_pb2.GetJobRequest(job_id=str(uuid.uuid4())),
            metadata=(("authorization", f"Bearer {key}"),),
            timeout=10,
        )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_client_that_trusts_the_certificate_is_served(
    api: RunningApi, certificate: tuple[Path, Path]
) -> None:
    roots = certificate[0].read_bytes()
    with grpc.secure_channel(api.grpc_target, grpc.ssl_channel_credentials(roots)) as channel:
        assert _get_unknown_job(channel, api.admin_key) == grpc.StatusCode.NOT_FOUND


def test_plaintext_and_unverified_clients_are_not(api: RunningApi) -> None:
    with grpc.insecure_channel(api.grpc_target) as channel:
        assert _get_unknown_job(channel, api.admin_key) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(api.grpc_target, grpc.ssl_channel_credentials()) as channel:
        # the system's roots do not vouch for a self-signed certificate
        assert _get_unknown_job(channel, api.admin_key) == grpc.StatusCode.UNAVAILABLE


def test_the_sdk_watches_over_tls_with_the_settings_ca(
    api: RunningApi, certificate: tuple[Path, Path]
) -> None:
    settings = Settings(grpc_tls_ca_file=str(certificate[0]))
    tls, roots = settings.client_grpc_tls()
    assert tls and roots == certificate[0].read_bytes()
    client = QorchClient(
        api.url,
        api.grpc_target,
        api_key=api.admin_key,
        grpc_credentials=grpc.ssl_channel_credentials(roots),
    )
    with client, pytest.raises(grpc.RpcError) as refused:
        list(client.watch(str(uuid.uuid4())))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND  # served: the job is unknown


def test_a_certificate_without_its_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(grpc_tls_cert_file="/etc/cert.pem")
