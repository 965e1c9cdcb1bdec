"""Device profiles (``qorchestra.devices``): the shipped ones load, the platform knows their
``emu-*`` pools, their qubit limits and prices, and more profiles come from a folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from qorch.stack import parse_pools
from qorchestra.config import DEFAULT_POOL_MAX_QUBITS, DENSITY_MATRIX_MAX_QUBITS, Settings
from qorchestra.costs import Price, estimate_usd, is_paid
from qorchestra.devices import (
    SHIPPED_DIR,
    SHIPPED_PROFILES,
    ProfileError,
    check_profile,
    emulated_profiles,
    profile_document,
    read_profile,
    write_profile,
)
from qorchestra.jobs.circuits import CircuitsJob, validate_job
from qorchestra.jobs.errors import SpecError

#: What the shipped profiles model: qubits, native gates, Braket's price (per task, per shot).
SHIPPED = {
    "emu-garnet": ("IQM Garnet", 20, ["cz", "prx"], (0.30, 0.00145)),
    "emu-forte": ("IonQ Forte-1", 36, ["GPI", "GPI2", "ZZ"], (0.30, 0.08)),
}


def garnet_document() -> dict[str, Any]:
    """The shipped Garnet profile as a JSON document."""
    document: dict[str, Any] = json.loads((SHIPPED_DIR / "garnet.json").read_text())
    return document


def test_the_shipped_profiles_model_real_devices() -> None:
    assert set(SHIPPED_PROFILES) == set(SHIPPED)
    readme = (SHIPPED_DIR / "README.md").read_text()
    for pool, (device, qubits, gates, (per_task, per_shot)) in SHIPPED.items():
        profile = SHIPPED_PROFILES[pool]
        assert profile.pool == pool and profile.path is not None
        assert (profile.device, profile.qubits, profile.native_gates) == (device, qubits, gates)
        assert dict(profile.price) == {"per_task": per_task, "per_shot": per_shot}
        assert profile.arn.startswith("arn:aws:braket:") and profile.arn in readme
        assert profile.source and f"{profile.name}.json" in readme
        assert 0 < profile.queue_s[0] <= profile.queue_s[1] <= 0.5
        assert read_profile(profile.path).properties == profile.properties


def test_the_platform_knows_every_shipped_pool_with_its_limit_and_price() -> None:
    settings = Settings()
    for pool, profile in SHIPPED_PROFILES.items():
        assert pool in settings.declared_pools()
        limit = min(profile.qubits, DENSITY_MATRIX_MAX_QUBITS)
        assert DEFAULT_POOL_MAX_QUBITS[pool] == settings.max_qubits(pool) == limit
        assert settings.aws_price(pool) == dict(profile.price)
        assert is_paid(pool)
        assert settings.emulated_profile(pool) is profile
        assert settings.emulator_queue(profile) == profile.queue_s
    assert not is_paid("local-dm") and is_paid("aws-sv1")
    assert settings.emulated_profile("local-sv") is None
    assert settings.emulated_profile("emu-nowhere") is None
    # three tasks of 100 shots on Garnet: 3 x $0.30 + 300 x $0.00145 = $1.335, rounded up
    price = settings.aws_price("emu-garnet")
    assert estimate_usd(3, 100, Price(price["per_task"], price["per_shot"])) == 1.34


def test_settings_override_prices_and_queues_of_emulated_pools() -> None:
    settings = Settings(
        aws_prices={"emu-garnet": {"per_task": 1.0, "per_shot": 0.5}},
        emulator_queue_s={"emu-forte": (0.0, 0.0)},
    )
    assert settings.aws_price("emu-garnet") == {"per_task": 1.0, "per_shot": 0.5}
    assert settings.emulator_queue(SHIPPED_PROFILES["emu-forte"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="QORCH_EMULATOR_QUEUE_S"):
        Settings(emulator_queue_s={"emu-forte": (0.5, 0.1)})


def test_jobs_and_qorch_up_accept_emulated_pools_with_a_profile() -> None:
    def job(pool: str) -> CircuitsJob:
        return CircuitsJob.model_validate(
            {
                "pool": pool,
                "result": {"type": "probabilities"},
                "programs": [{"source": "OPENQASM 3.0;\nqubit[2] q;\nprx(0.5, 0) q[0];\n"}],
            }
        )

    assert validate_job(job("emu-garnet"), Settings())
    with pytest.raises(SpecError) as refused:
        validate_job(job("emu-nowhere"), Settings())
    assert "unknown emulated device 'emu-nowhere' (known: emu-forte, emu-garnet)" in str(
        refused.value.errors
    )
    assert parse_pools(["emu-garnet=1", "local-sv=0"]) == ["emu-garnet"]


def test_a_profiles_folder_adds_and_replaces_profiles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = garnet_document()
    mine = write_profile(tmp_path / "mine.json", {**document, "device": "my Garnet"})
    cheap = {**document, "price": {"per_task": 0.0, "per_shot": 0.001}}
    write_profile(tmp_path / "garnet.json", cheap)
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "notes.txt").write_text("not a profile")

    with caplog.at_level(logging.WARNING):
        settings = Settings(device_profiles_dir=str(tmp_path))
        profiles = settings.emulated_profiles()
    assert set(profiles) == {"emu-garnet", "emu-forte", "emu-mine"}
    assert "broken.json" in caplog.text
    assert profiles["emu-mine"].device == "my Garnet" and mine.pool == "emu-mine"
    assert "emu-mine" in settings.declared_pools()
    assert settings.max_qubits("emu-mine") == DENSITY_MATRIX_MAX_QUBITS
    assert settings.aws_price("emu-mine") == dict(SHIPPED_PROFILES["emu-garnet"].price)
    assert settings.aws_price("emu-garnet") == {"per_task": 0.0, "per_shot": 0.001}
    assert profiles["emu-forte"] is SHIPPED_PROFILES["emu-forte"]
    # a folder that does not exist adds nothing
    assert emulated_profiles(tmp_path / "missing") == dict(SHIPPED_PROFILES)


def test_a_profile_written_is_read_back(tmp_path: Path) -> None:
    properties = garnet_document()["properties"]
    document = profile_document(
        properties,
        device="IQM Garnet",
        arn="arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet",
        price={"per_task": 0.3, "per_shot": 0.00145},
        queue_s=(0.0, 0.1),
        source="a test",
    )
    written = write_profile(tmp_path / "deeper" / "snap-1.json", document)
    read = read_profile(tmp_path / "deeper" / "snap-1.json")
    assert (read.name, read.pool, read.queue_s, read.source) == (
        "snap-1",
        "emu-snap-1",
        (0.0, 0.1),
        "a test",
    )
    assert read.properties == written.properties == properties
    assert not list((tmp_path / "deeper").glob(".*"))  # no partial file left behind


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("Bad_Name.json", {}, "the file name must be <profile>.json"),
        ("p.json", {"price": {"per_task": 0.3}}, "'price' must hold 'per_task' and 'per_shot'"),
        ("p.json", {"price": {"per_task": -1, "per_shot": 0}}, "'price' must hold"),
        ("p.json", {"queue_s": [0.5, 0.1]}, "'queue_s' must be [shortest, longest]"),
        ("p.json", {"device": ""}, "'device' must name the device"),
        ("p.json", {"properties": {}}, "'properties' must be the device's Braket properties"),
    ],
)
def test_an_invalid_profile_is_refused_with_the_reason(
    name: str, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ProfileError) as refused:
        check_profile(Path("/profiles") / name, {**garnet_document(), **change})
    assert f"device profile /profiles/{name}: " in str(refused.value)
    assert problem in str(refused.value)


def test_a_profile_without_qubits_or_native_gates_is_refused() -> None:
    document = garnet_document()
    document["properties"]["paradigm"].update(qubitCount=0, nativeGateSet=[])
    with pytest.raises(ProfileError) as refused:
        check_profile(Path("p.json"), document)
    assert "'properties.paradigm.qubitCount' must be a whole number" in str(refused.value)
    assert "'properties.paradigm.nativeGateSet' must list the native gates" in str(refused.value)


def test_the_emulators_connectivity_graph_names_every_qubit_and_adds_no_edge() -> None:
    """Braket's emulator accepts a result type's qubit only where it is a key of the graph."""
    forte = SHIPPED_PROFILES["emu-forte"]
    assert forte.properties["paradigm"]["connectivity"]["connectivityGraph"] == {}
    graph = forte.emulator_properties()["paradigm"]["connectivity"]["connectivityGraph"]
    assert set(graph) == {str(q) for q in range(36)}
    assert all(sorted(graph[q], key=int) == [p for p in graph if p != q] for q in graph)

    document = garnet_document()
    document["properties"]["paradigm"]["connectivity"]["connectivityGraph"] = {"0": ["1"]}
    one_way = check_profile(Path("one-way.json"), document)
    graph = one_way.emulator_properties()["paradigm"]["connectivity"]["connectivityGraph"]
    assert graph == {"0": ["1"], **{str(q): [] for q in range(1, 20)}}
    # the profile itself is left as it was
    assert one_way.properties["paradigm"]["connectivity"]["connectivityGraph"] == {"0": ["1"]}
