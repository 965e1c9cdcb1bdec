"""Circuits wider than any node, through the whole platform: a 12-qubit job on a pool of
4-qubit nodes is cut, its subexperiments run on the agents over Kafka, and the values are
knitted back; a minimisation trains through a cut. Reference values come from Braket's
LocalSimulator running the whole circuit directly, or from the uncut run in-process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from proto.qorch.v1 import jobs_pb2
from qorch.client import ApiError, QorchClient
from qorch.stack import Stack
from tests.support.circuits import direct_expectations, ladder
from tests.support.stack import running_stack
from tests.support.training import losses, minimize_template

pytestmark = pytest.mark.e2e

OBSERVABLES = ["Z" * 12, "ZZ" + "I" * 10, "I" * 5 + "XX" + "I" * 5, "I" * 11 + "Y"]
BINDINGS = [{"t": 0.3}, {"t": -1.1}, {"t": 2.0}]


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        database_url,
        kafka_bootstrap,
        tmp_path_factory,
        fragment_bindings=16,
        pool_max_qubits={"local-sv": 4},
        max_cut_overhead=500,
    ) as stack:
        yield stack


def wide_job(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "twelve qubits on four-qubit nodes",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": OBSERVABLES},
        "programs": [{"source": ladder(12), "bindings": BINDINGS}],
    }
    spec.update(changes)
    return spec


def test_a_12_qubit_job_on_4_qubit_nodes_equals_the_whole_circuit(client: QorchClient) -> None:
    submitted = client.submit(wide_job())
    plan = submitted["cutting"]["0"]
    assert (plan["cuts"], plan["gate_cuts"], plan["wire_cuts"]) == (2, 2, 0)
    assert plan["subexperiments"] == 35 and plan["sampling_overhead"] == pytest.approx(81)
    assert [s["width"] for s in plan["subcircuits"]] == [4, 4, 4] and plan["exact_search"]
    # progress counts circuit runs: every binding once per subexperiment
    assert submitted["progress"]["bindings_total"] == 3 * 35
    per_subcircuit = [3 * count for count in plan["programs_per_subcircuit"]]
    assert [s["runs_total"] for s in plan["subcircuits"]] == per_subcircuit  # 15, 75, 15
    assert all(s["runs_done"] == 0 for s in plan["subcircuits"])

    events = list(client.watch(submitted["id"]))
    assert events[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED, events[-1].message
    assert events[-1].bindings_done == events[-1].bindings_total == 105
    assert all(e.bindings_done <= e.bindings_total for e in events)

    (running,) = [e for e in events if e.type == "running"]
    assert running.metrics["cuts"] == 2 and running.metrics["subexperiments"] == 35
    assert running.metrics["sampling_overhead"] == pytest.approx(81)
    assert running.metrics["max_subcircuit_width"] == 4
    assert "cut into 3 subcircuits" in running.message

    progress = [e for e in events if e.type == "progress"]
    assert len(progress) == 35  # one fragment per subexperiment (3 bindings each)
    assert {int(e.metrics["subcircuit"]) for e in progress} == {0, 1, 2}
    assert all("program 0, subcircuit" in e.message for e in progress)
    # the pool spread the pieces of the one circuit over both agents
    nodes = {re.search(r"done on (\S+)$", e.message).group(1) for e in progress}  # type: ignore[union-attr]
    assert len(nodes) == 2, nodes

    shown = client.job(submitted["id"])
    assert shown["progress"]["percent"] == 100.0
    shown_plan = shown["cutting"]["0"]
    assert {k: v for k, v in shown_plan.items() if k != "subcircuits"} == {
        k: v for k, v in plan.items() if k != "subcircuits"
    }
    assert [s["runs_done"] for s in shown_plan["subcircuits"]] == per_subcircuit
    assert [s["runs_total"] for s in shown_plan["subcircuits"]] == per_subcircuit

    values = client.result(submitted["id"])["result"]["programs"][0]["values"]
    direct = [direct_expectations(ladder(12), b, OBSERVABLES) for b in BINDINGS]
    assert np.allclose(values, direct, atol=1e-8)


def test_a_plan_beyond_the_limit_is_a_422_with_its_numbers(client: QorchClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit(wide_job(cutting={"max_subcircuit_qubits": 2}))
    assert caught.value.status == 422
    text = str(caught.value)
    assert "5 cuts (5 gates, 0 wires)" in text and "sampling overhead 5.905e+04" in text
    assert "at most 500" in text


def test_a_minimisation_trains_through_a_cut_with_the_uncut_losses(client: QorchClient) -> None:
    job = minimize_template(steps=2, cutting={"max_subcircuit_qubits": 3})
    submitted = client.submit(job.model_dump(mode="json"))
    assert submitted["cutting"]["model"]["gate_cuts"] == 1

    events = list(client.watch(submitted["id"]))
    assert events[-1].status == jobs_pb2.JOB_STATUS_SUCCEEDED, events[-1].message
    (running,) = [e for e in events if e.type == "running"]
    assert running.metrics["cuts"] == 1 and "model cut into 2 subcircuits" in running.message
    assert events[-1].bindings_done == events[-1].bindings_total
    # training reports per step, and GET shows each subcircuit's runs of every step
    subcircuits = client.job(submitted["id"])["cutting"]["model"]["subcircuits"]
    assert all(s["runs_done"] == s["runs_total"] > 0 for s in subcircuits)
    assert sum(s["runs_total"] for s in subcircuits) == events[-1].bindings_total

    whole = losses(minimize_template(steps=2), None, 3)  # in-process, uncut
    platform = [dict(e.metrics) for e in events if e.type in ("step", "final")]
    assert len(platform) == len(whole)  # the platform adds timings (step_time_s) to these
    assert all(want.keys() <= got.keys() for got, want in zip(platform, whole, strict=True))
    for got, want in zip(platform, whole, strict=True):
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-8), key
    assert client.result(submitted["id"])["result"]["cutting"]["model"]["gate_cuts"] == 1
