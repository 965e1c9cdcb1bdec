"""The SDK against a real platform: circuits from Braket, Qiskit and OpenQASM submitted, waited
for over gRPC and read back equal to a direct simulation; a job cancelled; refusals as typed
exceptions (a 422's fields, 401, 403, 404, 409); every other route through its typed method;
the async client; and the quick start of docs/sdk.md run as a user would run it.

Real parts: the API served over HTTP and gRPC, the orchestrator and a ``local-sv`` node agent
(in threads), Postgres (a database of its own: the orchestrator must meet no other test's jobs)
and the broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from braket.circuits import Circuit, FreeParameter

from qorch.client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    JobStatus,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from qorch.programs import to_program
from qorch.samples import demo_job
from qorchestra.examples import example
from tests.support.api import RunningApi, serving_local_sv
from tests.support.circuits import direct_expectations, direct_probabilities
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API, the orchestrator and an agent of ``local-sv``, on a database of their own."""
    with serving_local_sv(database_url, kafka_bootstrap) as served:
        yield served


@pytest.fixture
def key(api: RunningApi) -> str:
    return api.new_key(f"sdk-{uuid.uuid4().hex[:8]}", ["read", "submit"])


@pytest.fixture
def client(api: RunningApi, key: str) -> Iterator[Client]:
    with Client(api.url, key, api.grpc_target) as client:
        yield client


@pytest.fixture
def admin(api: RunningApi) -> Iterator[Client]:
    with Client(api.url, api.admin_key, api.grpc_target) as client:
        yield client


def test_a_braket_circuit_is_submitted_waited_for_and_read_back(client: Client) -> None:
    theta = FreeParameter("theta")
    circuit = Circuit().ry(0, theta).cnot(0, 1).rx(1, 0.3)
    bindings = [{theta: 0.1}, {"theta": 1.2}]
    job = client.submit(circuit, bindings=bindings, observables=["ZZ", "XI"], name="sdk bell")

    assert job.status is JobStatus.QUEUED and job.result_type == "expectation"
    assert job.wait(timeout=DEADLINE_S) is job
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.progress.bindings_done == 2 and job.timings.finished_at is not None

    result = job.result()
    source = to_program(circuit).source
    direct = [direct_expectations(source, {"theta": t}, ["ZZ", "XI"]) for t in (0.1, 1.2)]
    assert np.allclose(result.values[0], direct, atol=1e-9)
    assert client.job(job.id).status is JobStatus.SUCCEEDED

    events = list(job.watch())  # the whole history, read again
    assert [e.seq for e in events] == list(range(1, job.last_seq + 1))
    assert events[0].type == "submitted" and events[-1].terminal


def test_a_qiskit_circuit_runs_as_qiskit_says(client: Client) -> None:
    qiskit = pytest.importorskip("qiskit")
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import Statevector

    angle = Parameter("angle")
    circuit = qiskit.QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.ry(angle, 1)
    job = client.submit(circuit, bindings=[{angle: 0.7}]).wait(timeout=DEADLINE_S)
    assert job.status is JobStatus.SUCCEEDED, job.error
    got = job.result().values[0][0]  # probabilities by bitstring, qubit 0 first

    want = Statevector(circuit.assign_parameters({angle: 0.7})).probabilities_dict()
    for bits, p in want.items():  # Qiskit writes qubit 0 last
        assert got.get(bits[::-1], 0.0) == pytest.approx(p, abs=1e-9)


def test_a_cancelled_job_stays_cancelled_and_has_no_result(client: Client) -> None:
    job = client.submit(demo_job(2000))
    assert job.cancel() is job and job.status is JobStatus.CANCELLED
    assert job.wait(timeout=DEADLINE_S).status is JobStatus.CANCELLED  # over: at once
    with pytest.raises(Conflict) as again:
        job.cancel()
    assert again.value.status == 409
    with pytest.raises(Conflict, match="CANCELLED"):
        job.result()


def test_refusals_are_typed(api: RunningApi, client: Client, key: str) -> None:
    before = client.jobs().count
    program = "OPENQASM 3.0;\nqubit[2] q;\nh q[0]\n"  # no semicolon
    with pytest.raises(ValidationFailed) as invalid:
        client.submit([program, (program, [])], observables=["ZZ"])
    assert [e.loc for e in invalid.value.errors] == [
        ("body", "programs", 0, "source"),
        ("body", "programs", 1, "source"),
    ]
    assert "syntax error" in invalid.value.errors[0].msg
    assert invalid.value.detail[0]["loc"] == ["body", "programs", 0, "source"]  # as sent
    assert client.jobs().count == before  # nothing stored

    with pytest.raises(NotFound):
        client.job(str(uuid.uuid4()))
    with Client(api.url, "qk_not-a-key", api.grpc_target) as stranger:
        with pytest.raises(Unauthenticated):
            stranger.jobs()
        with pytest.raises(Unauthenticated, match="gRPC UNAUTHENTICATED"):
            next(stranger.watch(str(uuid.uuid4())))
    with pytest.raises(Forbidden):
        client.keys()  # admin only
    reader = api.new_key(f"sdk-{uuid.uuid4().hex[:8]}", ["read"])
    with Client(api.url, reader, api.grpc_target) as read_only, pytest.raises(Forbidden):
        read_only.submit(demo_job(2))


def test_every_other_route_has_its_typed_method(client: Client, admin: Client) -> None:
    assert client.healthz() and client.readyz().ready
    assert {p.name for p in client.pools().data} >= {"local-sv", "local-dm"}
    [node] = wait_until(lambda: client.nodes(pool="local-sv").data, DEADLINE_S, what="the agent")
    assert node.state == "RUNNING" and node.credential_id is not None

    dataset = client.upload_dataset("a,b,kind\n0.1,0.9,x\n0.8,0.2,y\n", "tiny", "kind")
    assert (dataset.rows, dataset.feature_names, dataset.classes) == (2, ["a", "b"], ["x", "y"])
    assert client.dataset(dataset.id) == dataset
    assert [d.id for d in client.datasets().data] == [dataset.id]

    vqe = client.minimize(example("h2-vqe"), steps=2).wait(timeout=DEADLINE_S)
    assert vqe.kind == "minimize" and vqe.status is JobStatus.SUCCEEDED, vqe.error
    metrics = client.metrics(vqe.id)
    assert metrics.status is JobStatus.SUCCEEDED and metrics.data[0].kind == "step"
    assert "energy" in metrics.data[0].values
    assert client.checkpoint(vqe.id).state
    with pytest.raises(Conflict, match="only train jobs predict"):
        client.predict(vqe.id, [[0.0, 1.0]])

    tenant = f"sdk-{uuid.uuid4().hex[:8]}"
    made = admin.create_key(tenant, ["read"], name="ci")
    assert made.key.startswith(made.prefix) and made.scopes == ["read"]
    assert made.id in {k.id for k in admin.keys().data}
    assert admin.revoke_key(made.id).revoked_at is not None
    assert admin.set_tenant(tenant, budget_usd=5.0, max_concurrent_jobs=3).budget_usd == 5.0
    assert admin.tenant(tenant).max_concurrent_jobs == 3

    pool = f"lab-{uuid.uuid4().hex[:6]}"
    enrolled_node = admin.enroll_node(pool, name="bench")
    assert enrolled_node.credential and enrolled_node.pool == pool
    assert [c.id for c in admin.node_credentials(pool=pool).data] == [enrolled_node.id]
    assert admin.revoke_node(enrolled_node.id).revoked_at is not None
    assert admin.node_credentials(pool=pool).data == []


def test_the_async_client_submits_waits_and_reads(api: RunningApi, key: str) -> None:
    source = "OPENQASM 3.0;\ninput float t;\nqubit[1] q;\nrx(t) q[0];\n"

    async def run() -> list[float]:
        async with AsyncClient(api.url, key, api.grpc_target) as client:
            job = await client.submit(source, bindings=[{"t": 0.0}, {"t": np.pi}], shots=0)
            await job.wait(timeout=DEADLINE_S)
            assert job.status is JobStatus.SUCCEEDED, job.error
            seqs = [event.seq async for event in job.watch()]
            assert seqs == list(range(1, job.last_seq + 1))
            return [values.get("1", 0.0) for values in (await job.result()).values[0]]

    ones = asyncio.run(run())
    expected = [direct_probabilities(source, {"t": t})[1] for t in (0.0, np.pi)]
    assert ones == pytest.approx(expected, abs=1e-9)


def quick_start() -> str:
    """The first Python block of docs/sdk.md."""
    text = (ROOT / "docs" / "sdk.md").read_text()
    match = re.search(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match, "docs/sdk.md has no python block"
    return match.group(1)


def test_the_quick_start_of_the_docs_runs(api: RunningApi, key: str) -> None:
    env = {
        **os.environ,
        "QORCH_API_URL": api.url,
        "QORCH_GRPC_TARGET": api.grpc_target,
        "QORCH_API_KEY": key,
    }
    out = subprocess.run(
        [sys.executable, "-c", quick_start()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert out.returncode == 0, out.stderr
    assert "SUCCEEDED" in out.stdout, out.stdout


def test_the_qorch_command_is_built_on_the_sdk(
    api: RunningApi,
    key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The client commands and the demo's summaries, through ``Client``."""
    from qorch import cli

    def qorch(*argv: str, api_key: str = key) -> tuple[int, str]:
        monkeypatch.setenv("QORCH_API_KEY", api_key)
        cli.get_settings.cache_clear()
        capsys.readouterr()
        code = cli.main(list(argv))
        return code, capsys.readouterr().out

    monkeypatch.setenv("QORCH_API_URL", api.url)
    monkeypatch.setenv("QORCH_GRPC_TARGET", api.grpc_target)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(demo_job(4)))
    try:
        code, out = qorch("submit", str(spec), "--watch")
        assert code == 0, out
        job_id = out.split()[0]
        assert qorch("watch", job_id)[1].strip().endswith(f"{job_id}: SUCCEEDED")
        assert "1 job(s)" in qorch("jobs", "--status", "SUCCEEDED")[1]
        assert json.loads(qorch("job", job_id)[1])["status"] == "SUCCEEDED"
        assert len(json.loads(qorch("result", job_id)[1])["result"]["programs"][0]["values"]) == 4
        code, out = qorch("cancel", job_id)
        assert code == 1 and "HTTP 409" in out
        assert "local-sv" in qorch("nodes")[1]
        code, out = qorch("keys", "list")
        assert code == 1 and "HTTP 403" in out
        assert "API keys" in qorch("keys", "list", api_key=api.admin_key)[1]
        tenant = json.loads(qorch("tenant", "admin", api_key=api.admin_key)[1])
        assert tenant["id"] == "admin"

        with Client(api.url, key, api.grpc_target) as client:
            cli.print_summary(client, job_id)
            cli.print_nodes(client)
        out = capsys.readouterr().out
        assert "SUCCEEDED 4 circuits" in out and "lowest sum of observables" in out
        assert "node agents" in out and "pools" in out
    finally:
        cli.get_settings.cache_clear()
