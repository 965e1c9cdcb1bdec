"""Judging a program as an emulated device would (issue 16), without processes: the one check
(``qorchestra.devices.emulation.checked_circuit``) that the API's parse workers and the node
agents share, what a parse worker answers (``api.sandbox.judge``), the parse cache's key per
device, and ``screen`` asking for the pool's device."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from api.admission import screen
from api.auth import Principal
from api.sandbox import Emulators, ParseCache, device_key, judge
from nodes.executors.base import ExecutionError
from nodes.executors.emulated import EmulatedExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.devices import SHIPPED_PROFILES, DeviceProfile
from qorchestra.devices.emulation import NotNative, build_emulator, checked_circuit
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.qasm import ProgramInfo
from qorchestra.store.pools import PoolPresence

pytestmark = pytest.mark.filterwarnings("ignore:You are running a noise-free circuit")

GARNET = SHIPPED_PROFILES["emu-garnet"]
FORTE = SHIPPED_PROFILES["emu-forte"]
HEADER = "OPENQASM 3.0;\ninput float theta;\nqubit[2] q;\n"
#: Native to Garnet: prx and cz on qubits 0 and 1, which share a coupler.
GATES = "prx(theta, pi/2) q[0];\ncz q[0], q[1];\n"
NATIVE = HEADER + GATES
BOXED = f"{HEADER}#pragma braket verbatim\nbox {{\n{GATES}}}\n"
NOT_NATIVE = (
    "OPENQASM 3.0;\nqubit[2] q;\n#pragma braket verbatim\nbox {\nh q[0];\ncz q[0], q[1];\n}\n"
)
OFF_LATTICE = "OPENQASM 3.0;\nqubit[3] q;\ncz q[0], q[2];\n"
WIDE = "OPENQASM 3.0;\nqubit[21] q;\nprx(0.1, 0) q;\n"
MEMORY_MB = 2048


def recalibrated(profile: DeviceProfile) -> DeviceProfile:
    """``profile`` with properties of another day: another device as far as caches know."""
    properties = json.loads(json.dumps(profile.emulator_properties()))
    properties["service"]["updatedAt"] = "2030-01-01T00:00:00"
    return dataclasses.replace(profile, name=f"{profile.name}-b", properties=properties)


# -- the check ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [NATIVE, BOXED], ids=["unboxed", "boxed"])
def test_a_native_program_passes_boxed_or_not(source: str) -> None:
    circuit = checked_circuit(build_emulator(GARNET), source)
    assert [str(i.operator.name) for i in circuit.instructions] == [
        "StartVerbatimBox",
        "PRx",
        "CZ",
        "EndVerbatimBox",
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (NOT_NATIVE, "Gate H is not a native gate for this device."),
        (OFF_LATTICE, "0 is not connected to qubit 2 in this device."),
        (WIDE, "Circuit must use at most 20 qubits, but uses 21 qubits."),
    ],
    ids=["gate", "coupler", "qubits"],
)
def test_the_emulators_refusal_is_its_own_message(source: str, message: str) -> None:
    with pytest.raises(NotNative) as refused:
        checked_circuit(build_emulator(GARNET), source)
    assert str(refused.value) == message


def test_the_agent_fails_a_fragment_with_the_same_check() -> None:
    work = pb.Fragment(
        fragment_id="f",
        job_id="j",
        attempt=1,
        pool=GARNET.pool,
        program=NOT_NATIVE,
        result_kind=pb.RESULT_KIND_COUNTS,
        shots=10,
        bindings=[pb.Binding()],
        qubits=2,
    )
    with pytest.raises(ExecutionError) as failed:
        EmulatedExecutor(GARNET, queue_s=(0, 0), sleep=lambda _: None).execute(work)
    with pytest.raises(NotNative) as refused:
        checked_circuit(build_emulator(GARNET), NOT_NATIVE)
    assert failed.value.message == GARNET.refusal(str(refused.value))
    assert failed.value.message == (
        "the program does not run on IQM Garnet (pool emu-garnet): "
        "Gate H is not a native gate for this device."
    )


def test_a_profiles_digest_names_its_emulators_properties() -> None:
    assert GARNET.digest == GARNET.digest != FORTE.digest
    same = dataclasses.replace(GARNET, name="garnet-copy")
    assert same.digest == GARNET.digest  # the same device, as its emulator sees it
    assert recalibrated(GARNET).digest != GARNET.digest


# -- a parse worker's answers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulators() -> Emulators:
    return Emulators.shipped()


def test_a_worker_holds_the_shipped_devices_emulators(emulators: Emulators) -> None:
    assert all(p.digest in emulators for p in SHIPPED_PROFILES.values())


def test_a_worker_parses_then_asks_its_device(emulators: Emulators) -> None:
    info = {"inputs": ("theta",), "qubits": 2, "measures": False}
    assert judge({"source": NATIVE}, emulators, MEMORY_MB) == {"ok": info}
    assert judge({"source": NATIVE, "device": GARNET.digest}, emulators, MEMORY_MB) == {"ok": info}
    assert judge({"source": NATIVE, "device": FORTE.digest}, emulators, MEMORY_MB) == {
        "refused": "Gate PRx is not a native gate for this device."
    }
    assert judge({"source": NOT_NATIVE}, emulators, MEMORY_MB) == {
        "ok": {"inputs": (), "qubits": 2, "measures": False}
    }
    # a program that does not parse is refused for that, device or not
    broken = {"source": "OPENQASM 3.0;\nqubit q;\nfoo q;\n", "device": GARNET.digest}
    assert set(judge(broken, emulators, MEMORY_MB)) == {"error"}


def test_a_worker_builds_another_devices_emulator_once_given_its_properties() -> None:
    emulators = Emulators()
    lab = recalibrated(GARNET)
    request: dict[str, Any] = {"source": NOT_NATIVE, "device": lab.digest}

    assert judge(request, emulators, MEMORY_MB) == {"need": "properties"}
    request["properties"] = lab.emulator_properties()
    assert judge(request, emulators, MEMORY_MB) == {
        "refused": "Gate H is not a native gate for this device."
    }
    assert lab.digest in emulators  # kept: the next request needs no properties
    assert judge({"source": NATIVE, "device": lab.digest}, emulators, MEMORY_MB)["ok"]


def test_a_device_whose_emulator_cannot_be_built_refuses_with_braket_s_message() -> None:
    properties = json.loads(json.dumps(GARNET.emulator_properties()))
    properties["standardized"]["oneQubitProperties"].popitem()
    answer = judge(
        {"source": NATIVE, "device": "broken", "properties": properties}, Emulators(), MEMORY_MB
    )
    assert answer["refused"].startswith("Braket cannot build the device's emulator: ")


# -- the cache ---------------------------------------------------------------------------------


def test_the_cache_keeps_outcomes_per_device() -> None:
    cache = ParseCache(size=8)
    info = ProgramInfo(("theta",), 2, False)
    cache.put(ParseCache.key("a", NATIVE, device_key(GARNET)), info)
    cache.put(ParseCache.key("a", NATIVE, device_key(FORTE)), "refused")

    assert cache.get(ParseCache.key("a", NATIVE, device_key(GARNET))) == info
    assert cache.get(ParseCache.key("a", NATIVE, device_key(FORTE))) == "refused"
    assert cache.get(ParseCache.key("a", NATIVE)) is None  # no device: parsed on its own
    assert cache.get(ParseCache.key("a", NATIVE, device_key(recalibrated(GARNET)))) is None
    # a profile with the same properties that serves another pool refuses in its own name
    copy = dataclasses.replace(GARNET, name="garnet-copy")
    assert device_key(copy) != device_key(GARNET)
    assert device_key(None) == ""


# -- screen ------------------------------------------------------------------------------------


class _Sandbox:
    def __init__(self) -> None:
        self.devices: list[DeviceProfile | None] = []

    def analyze(self, source: str, **terms: Any) -> ProgramInfo:
        self.devices.append(terms["device"])
        return ProgramInfo((), 2, False)


class _Pools:
    def presence(self, _session: object, _settings: Settings, _pool: str) -> PoolPresence:
        return PoolPresence(known=True, live=True)


@pytest.mark.parametrize(
    ("pool", "device"),
    [("emu-garnet", GARNET), ("emu-forte", FORTE), ("local-sv", None), ("emu-nowhere", None)],
)
def test_screen_asks_for_the_pools_device(pool: str, device: DeviceProfile | None) -> None:
    job = CircuitsJob.model_validate(
        {
            "pool": pool,
            "result": {"type": "probabilities"},
            "programs": [{"source": NOT_NATIVE}, {"source": NATIVE}],
        }
    )
    sandbox = _Sandbox()
    admin = Principal("k", "p", "tenant-a", frozenset({"admin"}))  # admins skip the rate limit
    screen(job, admin, Settings(), sandbox, None, None, _Pools())  # type: ignore[arg-type]

    assert sandbox.devices == [device, device]
