"""A program that an emulated device cannot run is refused at submission (issue 16): through the
real API (served over HTTP, real parse workers, real Postgres and broker), a job on an
``emu-*`` pool whose program the device's emulator refuses (a gate that is not native, two
qubits without a coupler, more qubits than the device) is a 422 naming the program, with the
emulator's message, and nothing is stored or charged; a native program (in a verbatim box or
not) is accepted; the same source is judged per device, whatever was cached for another."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from qorchestra.devices import SHIPPED_DIR
from tests.support.api import RunningApi, running_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:You are running a noise-free circuit"),
]

#: Native to IQM Garnet: prx and cz on qubits 0 and 1, which share a coupler.
GARNET_GATES = "prx(theta, pi/2) q[0];\nprx(-pi/2, pi/2) q[1];\ncz q[0], q[1];\n"
HEADER = "OPENQASM 3.0;\ninput float theta;\nqubit[2] q;\n"
GARNET_NATIVE = HEADER + GARNET_GATES
GARNET_BOXED = f"{HEADER}#pragma braket verbatim\nbox {{\n{GARNET_GATES}}}\n"
#: Native to IonQ Forte: gpi and zz, all to all.
FORTE_NATIVE = HEADER + "gpi(theta) q[0];\nzz(0.3) q[0], q[1];\n"
#: Garnet's qubits 0 and 2 (QB1 and QB3) share no coupler.
OFF_LATTICE = "OPENQASM 3.0;\nqubit[3] q;\ncz q[0], q[2];\n"


@pytest.fixture(scope="module")
def api(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """The API with a budget for each tenant's priced jobs (emulated pools cost what their
    devices cost), and a profile of its own: ``emu-lab``, Garnet as calibrated another day
    (the parse workers build its emulator when first asked about it)."""
    profiles = tmp_path_factory.mktemp("profiles")
    lab = json.loads((SHIPPED_DIR / "garnet.json").read_text())
    lab["properties"]["service"]["updatedAt"] = "2030-01-01T00:00:00"
    (profiles / "lab.json").write_text(json.dumps(lab))
    with running_api(
        database_url, kafka_bootstrap, tenant_budget_usd=10.0, device_profiles_dir=str(profiles)
    ) as served:
        yield served


@pytest.fixture
def tenant(api: RunningApi) -> str:
    """A tenant of its own (no other test's jobs), with a key that submits and reads."""
    name = f"emu-{uuid.uuid4().hex[:8]}"
    api.keys[name] = api.new_key(name, ["submit", "read"])
    return name


def job(pool: str, *sources: str) -> dict[str, Any]:
    """Probabilities of each program, for one binding, with a cost cap."""
    return {
        "pool": pool,
        "shots": 0,
        "max_cost_usd": 5.0,
        "result": {"type": "probabilities"},
        "programs": [
            {"source": s, "bindings": [{"theta": 0.5}] if "theta" in s else []} for s in sources
        ],
    }


def submit(api: RunningApi, tenant: str, spec: dict[str, Any]) -> Any:
    return api.call("POST", "/v1/jobs", api.keys[tenant], json=spec)


def refusal(answer: Any) -> tuple[list[Any], str]:
    """The loc and message of a 422's one error."""
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    return error["loc"], error["msg"]


def stored(api: RunningApi, tenant: str) -> int:
    answer = api.call("GET", "/v1/jobs", api.keys[tenant])
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["count"]
    return count


def spent(api: RunningApi, tenant: str) -> float:
    answer = api.call("GET", f"/v1/tenants/{tenant}", api.admin_key)
    assert answer.status_code == 200, answer.text
    value: float = answer.json()["spent_usd"]
    return value


def test_a_gate_that_is_not_native_is_refused_with_the_emulators_message(
    api: RunningApi, tenant: str
) -> None:
    source = (
        "OPENQASM 3.0;\nqubit[2] q;\n#pragma braket verbatim\nbox {\nh q[0];\ncz q[0], q[1];\n}\n"
    )
    loc, msg = refusal(submit(api, tenant, job("emu-garnet", source)))

    assert loc == ["body", "programs", 0, "source"]
    assert msg == (
        "the program does not run on IQM Garnet (pool emu-garnet): "
        "Gate H is not a native gate for this device."
    )
    assert stored(api, tenant) == 0
    assert spent(api, tenant) == 0.0


def test_a_native_program_is_accepted_boxed_or_not(api: RunningApi, tenant: str) -> None:
    answer = submit(api, tenant, job("emu-garnet", GARNET_NATIVE, GARNET_BOXED))

    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "QUEUED"
    assert stored(api, tenant) == 1
    assert spent(api, tenant) == pytest.approx(0.60)  # two tasks at Garnet's $0.30


def test_two_qubits_without_a_coupler_and_too_many_qubits_are_refused(
    api: RunningApi, tenant: str
) -> None:
    wide = "OPENQASM 3.0;\nqubit[21] q;\nprx(0.1, 0) q;\n"
    answer = submit(api, tenant, job("emu-garnet", GARNET_NATIVE, OFF_LATTICE, wide))

    assert answer.status_code == 422, answer.text
    errors = [(e["loc"], e["msg"]) for e in answer.json()["detail"]]
    prefix = "the program does not run on IQM Garnet (pool emu-garnet): "
    assert errors == [
        (
            ["body", "programs", 1, "source"],
            prefix + "0 is not connected to qubit 2 in this device.",
        ),
        (
            ["body", "programs", 2, "source"],
            prefix + "Circuit must use at most 20 qubits, but uses 21 qubits.",
        ),
    ]
    assert stored(api, tenant) == 0


def test_the_same_source_is_judged_per_device(api: RunningApi, tenant: str) -> None:
    assert submit(api, tenant, job("emu-garnet", GARNET_NATIVE)).status_code == 201
    # cached as native for Garnet: not for Forte
    loc, msg = refusal(submit(api, tenant, job("emu-forte", GARNET_NATIVE)))
    assert loc == ["body", "programs", 0, "source"]
    assert msg == (
        "the program does not run on IonQ Forte-1 (pool emu-forte): "
        "Gate PRx is not a native gate for this device."
    )
    # cached as refused for Forte: still native for Garnet, and any program on local-sv
    assert submit(api, tenant, job("emu-garnet", GARNET_NATIVE)).status_code == 201
    assert submit(api, tenant, job("local-sv", GARNET_NATIVE)).status_code == 201

    assert submit(api, tenant, job("emu-forte", FORTE_NATIVE)).status_code == 201
    loc, msg = refusal(submit(api, tenant, job("emu-garnet", FORTE_NATIVE)))
    assert "Gate GPi is not a native gate for this device." in msg
    assert stored(api, tenant) == 4


def test_a_profile_of_the_installation_is_judged_by_its_own_emulator(
    api: RunningApi, tenant: str
) -> None:
    source = (
        "OPENQASM 3.0;\nqubit[2] q;\n#pragma braket verbatim\nbox {\nh q[0];\ncz q[0], q[1];\n}\n"
    )
    loc, msg = refusal(submit(api, tenant, job("emu-lab", source, GARNET_NATIVE)))

    assert loc == ["body", "programs", 0, "source"]
    assert msg == (
        "the program does not run on IQM Garnet (pool emu-lab): "
        "Gate H is not a native gate for this device."
    )
    assert submit(api, tenant, job("emu-lab", GARNET_NATIVE)).status_code == 201
    assert stored(api, tenant) == 1


def test_a_template_is_judged_where_it_stands(api: RunningApi, tenant: str) -> None:
    spec = {
        "kind": "minimize",
        "pool": "emu-garnet",
        "max_cost_usd": 5.0,
        "hamiltonian": {"builtin": "h2"},
        "ansatz": {
            "type": "template",
            "template": {
                "source": (
                    "OPENQASM 3.0;\ninput float w;\nqubit[2] q;\n"
                    "#pragma braket verbatim\nbox {\nrx(w) q[0];\n}\n"
                ),
                "weight_inputs": ["w"],
            },
        },
        "steps": 1,
    }
    loc, msg = refusal(submit(api, tenant, spec))

    assert loc == ["body", "ansatz", "template", "source"]
    assert msg.endswith("Gate Rx is not a native gate for this device.")
    assert stored(api, tenant) == 0
