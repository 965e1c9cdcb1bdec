"""``qorch devices``: the profiles listed, and a snapshot refused without AWS credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from qorch import devices_cli
from qorch.cli import main
from qorch.devices_cli import EXIT_CONFIG, profile_name


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere, and no metadata-service probe."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_a_snapshot_without_credentials_says_what_to_set_and_writes_nothing(
    no_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
    out = tmp_path / "profiles"
    assert main(["devices", "snapshot", arn, "--dir", str(out)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert error.startswith(f"qorch devices snapshot: cannot read {arn}: ")
    for hint in ("AWS credentials were not found", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):
        assert hint in error, error
    assert not out.exists()


def test_a_snapshot_needs_a_profile_name(capsys: pytest.CaptureFixture[str]) -> None:
    arn = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
    assert main(["devices", "snapshot", arn, "--name", "Not_A_Name"]) == EXIT_CONFIG
    assert "'Not_A_Name' is not a profile name" in capsys.readouterr().err


def test_profile_names_come_from_the_arn() -> None:
    assert profile_name("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet") == "garnet"
    assert profile_name("arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1") == "forte-1"
    assert profile_name("arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3") == "ankaa-3"


def test_devices_list_shows_every_profile(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devices_cli, "console", Console(width=200))
    assert main(["devices", "list"]) == 0
    out = capsys.readouterr().out
    assert "emu-garnet" in out and "IQM Garnet" in out and "cz prx" in out
    assert "emu-forte" in out and "IonQ Forte-1" in out and "36 (runs 13)" in out
