"""An emulated device end to end: a stack started like ``qorch up --pool emu-garnet=1`` runs a
Bell-state job on Braket's emulator of IQM Garnet, priced like the device, and its results
equal ``LocalEmulator`` run directly. A program that is not native to Garnet is refused at
submission with the emulator's message (the agent's own check, for fragments that bypass the
API, is tested in tests/unit/test_executor_emulated.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from braket.circuits import Circuit, Observable
from braket.devices import LocalSimulator
from braket.emulation.local_emulator import LocalEmulator

from qorch.client import ApiError, QorchClient
from qorch.stack import Stack
from qorchestra.devices import SHIPPED_PROFILES, DeviceProfile
from qorchestra.devices.emulation import build_emulator, checked_circuit
from tests.support.stack import running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:You are running a noise-free circuit"),
]

POOL = "emu-garnet"
ROOT = Path(__file__).resolve().parents[2]

#: A Bell state in Garnet's native gates (``theta`` = pi/2: the Bell state itself).
BELL = """OPENQASM 3.0;
input float theta;
qubit[2] q;
prx(theta, pi/2) q[0];
prx(-pi/2, pi/2) q[1];
cz q[0], q[1];
prx(pi/2, pi/2) q[1];
"""
THETAS = (math.pi / 2, 0.4, 2.0)


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One agent of emu-garnet; fragments of two bindings; a budget for priced jobs."""
    with running_stack(
        database_url,
        kafka_bootstrap,
        tmp_path_factory,
        pools=[POOL],
        fragment_bindings=2,
        tenant_budget_usd=10.0,
    ) as stack:
        yield stack


def run_job(client: QorchClient, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit on emu-garnet, follow to the end; the finished job."""
    job = client.submit({"pool": POOL, "shots": 0, **spec})
    events = list(client.watch(job["id"]))
    assert events[-1].type in ("succeeded", "failed"), events[-1]
    return client.job(job["id"])


def test_a_bell_job_on_an_emulated_device(client: QorchClient) -> None:
    spec = {
        "result": {"type": "probabilities"},
        "programs": [{"source": BELL, "bindings": [{"theta": t} for t in THETAS]}],
    }
    with pytest.raises(ApiError) as uncapped:
        client.submit({"pool": POOL, "shots": 0, **spec})
    assert uncapped.value.status == 422 and "max_cost_usd" in str(uncapped.value)

    spent = client.tenant("admin")["spent_usd"]
    job = run_job(client, {**spec, "max_cost_usd": 1.0})
    assert job["status"] == "SUCCEEDED", job["error"]
    # charged like the device: three tasks at Garnet's $0.30, no shots
    assert client.tenant("admin")["spent_usd"] - spent == pytest.approx(0.90)
    nodes = [n for n in client.nodes()["data"] if n["pool"] == POOL]
    assert [n["backend"] for n in nodes] == ["LocalEmulator(garnet)"]

    emulator = LocalEmulator.from_json(json.dumps(SHIPPED_PROFILES[POOL].emulator_properties()))
    boxed = BELL.replace("qubit[2] q;\n", "qubit[2] q;\n#pragma braket verbatim\nbox {\n") + "}\n"
    values = client.result(job["id"])["result"]["programs"][0]["values"]
    for theta, got in zip(THETAS, values, strict=True):
        circuit = Circuit.from_ir(
            boxed + "#pragma braket result probability q[0], q[1]\n", inputs={"theta": theta}
        )
        expected = emulator.run(circuit, shots=0).result().values[0]
        for index, probability in enumerate(expected):
            assert got.get(format(index, "02b"), 0.0) == pytest.approx(probability, abs=1e-10)


def test_a_program_not_native_to_the_device_is_refused_at_submission(client: QorchClient) -> None:
    spent = client.tenant("admin")["spent_usd"]
    source = (
        "OPENQASM 3.0;\nqubit[2] q;\n#pragma braket verbatim\nbox {\nh q[0];\ncz q[0], q[1];\n}\n"
    )
    with pytest.raises(ApiError) as refused:
        client.submit(
            {
                "pool": POOL,
                "shots": 0,
                "result": {"type": "probabilities"},
                "programs": [{"source": source}],
                "max_cost_usd": 1.0,
            }
        )
    assert refused.value.status == 422
    assert "Gate H is not a native gate for this device." in str(refused.value), refused.value
    assert client.tenant("admin")["spent_usd"] == spent  # nothing stored, nothing charged


def test_the_bell_sweep_as_written_runs_on_the_emulated_device(client: QorchClient) -> None:
    """examples/bell-sweep.json (ry and cnot, not Garnet's native gates) is compiled to prx and
    cz as Garnet's own compiler would, and runs with the device's noise: its expectation
    values are the ideal ones, blurred."""
    spec = json.loads((ROOT / "examples" / "bell-sweep.json").read_text())
    job = run_job(client, {**spec, "pool": POOL, "max_cost_usd": 5.0})
    assert job["status"] == "SUCCEEDED", job["error"]

    program = spec["programs"][0]
    values = client.result(job["id"])["result"]["programs"][0]["values"]
    ideal_circuit = Circuit.from_ir(program["source"])
    ideal_circuit.expectation(Observable.Z() @ Observable.Z(), target=[0, 1])
    ideal_circuit.expectation(Observable.X(), target=[0])
    profile = SHIPPED_PROFILES[POOL]
    emulator = build_emulator(profile)
    blurred = []
    for binding, got in zip(program["bindings"], values, strict=True):
        ideal = LocalSimulator().run(ideal_circuit, shots=0, inputs=binding).result().values
        assert got == pytest.approx(ideal, abs=0.2)
        blurred += [abs(g - i) for g, i in zip(got, ideal, strict=True)]
        # <ZZ> exactly as Braket's own emulator gives it: from its probabilities (which it
        # leaves without readout noise), each qubit's readout error then flipping Z's sign
        measured = checked_circuit(emulator, program["source"], profile.gates)
        measured.probability(target=[0, 1])
        p = emulator.run(measured, shots=0, inputs=binding).result().values[0]
        readout = math.prod(1 - 2 * readout_error(profile, q) for q in (0, 1))
        assert got[0] == pytest.approx((p[0] - p[1] - p[2] + p[3]) * readout, abs=1e-10)
    assert max(blurred) > 1e-3  # the device's noise, applied


def readout_error(profile: DeviceProfile, qubit: int) -> float:
    """1 - the READOUT fidelity the profile gives ``qubit``."""
    fidelities = profile.properties["standardized"]["oneQubitProperties"][str(qubit)]
    readout = next(
        f["fidelity"]
        for f in fidelities["oneQubitFidelity"]
        if f["fidelityType"]["name"] == "READOUT"
    )
    return 1.0 - float(readout)
