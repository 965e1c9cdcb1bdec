"""Where the SDK finds the API: its arguments, else the variables the ``qorch`` command reads,
with the command's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from qorch.client import Client, ClientConfig
from qorchestra.config import Settings


def test_without_arguments_or_variables_it_is_the_local_stack() -> None:
    config = ClientConfig.resolve(env={})
    assert config == ClientConfig(
        url="http://127.0.0.1:8000", api_key="", grpc_target="127.0.0.1:50051"
    )


def test_the_variables_of_the_command_are_read() -> None:
    env = {
        "QORCH_API_URL": "https://qorch.example.com/",
        "QORCH_API_KEY": "qk_secret",
        "QORCH_GRPC_TARGET": "grpc.example.com:443",
        "QORCH_GRPC_TLS": "true",
    }
    config = ClientConfig.resolve(env=env)
    assert config == ClientConfig(
        url="https://qorch.example.com",
        api_key="qk_secret",
        grpc_target="grpc.example.com:443",
        grpc_tls=True,
    )


def test_host_and_port_make_the_addresses_when_no_url_is_set() -> None:
    env = {
        "QORCH_API_HOST": "10.0.0.5",
        "QORCH_API_PORT": "9000",
        "QORCH_GRPC_HOST": "10.0.0.6",
        "QORCH_GRPC_PORT": "9001",
    }
    config = ClientConfig.resolve(env=env)
    assert (config.url, config.grpc_target) == ("http://10.0.0.5:9000", "10.0.0.6:9001")


def test_the_addresses_agree_with_the_command_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same variables give the SDK and ``qorch`` the same API."""
    env = {"QORCH_API_PORT": "8123", "QORCH_GRPC_TARGET": "api.internal:7000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    config = ClientConfig.resolve(env=env)
    assert (config.url, config.grpc_target) == (
        settings.client_api_url(),
        settings.client_grpc_target(),
    )


def test_arguments_win_over_variables_and_an_empty_key_is_kept() -> None:
    env = {"QORCH_API_URL": "http://env:1", "QORCH_API_KEY": "env-key"}
    config = ClientConfig.resolve("http://arg:2", "", "arg:3", env=env)
    assert (config.url, config.api_key, config.grpc_target) == ("http://arg:2", "", "arg:3")


def test_a_ca_file_means_tls_trusting_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n...\n")
    config = ClientConfig.resolve(env={"QORCH_GRPC_TLS_CA_FILE": str(ca)})
    assert config.grpc_tls and config.grpc_root_certificates == ca.read_bytes()


def test_the_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORCH_API_URL", "http://api.test:8080")
    monkeypatch.setenv("QORCH_API_KEY", "qk_from_env")
    monkeypatch.setenv("QORCH_GRPC_TARGET", "api.test:50052")
    with Client() as client:
        assert client.config.url == "http://api.test:8080"
        assert client.config.grpc_target == "api.test:50052"
        assert client._http.headers["Authorization"] == "Bearer qk_from_env"
