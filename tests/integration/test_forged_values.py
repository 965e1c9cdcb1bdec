"""Forged values never count: a result whose values no run of its fragment can produce (an
expectation of 42, counts of a billion for 100 shots, bitstrings of the wrong width) fails the
attempt, the fragment runs again, and the job ends with the values of a correct run.

Real Postgres, no Kafka: results are applied as the orchestrator's results loop applies them
(docs: DESIGN.md, "Trust")."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select

from nodes.encoding import expand_bindings
from nodes.executors.local import LocalExecutor
from orchestrator import training_steps
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Fragment
from qorchestra.training.spec import TrainJob
from tests.support.settings import make_settings
from tests.support.stored_jobs import apply, fragments_of, plan_until, store_circuits_job

pytestmark = pytest.mark.integration

#: Three qubits, two of them measured: its counts have bitstrings of two bits.
MEASURED = (
    "OPENQASM 3.0; input float a; qubit[3] q; bit[2] c; rx(a) q[0]; cnot q[0], q[1]; "
    "c[0] = measure q[0]; c[1] = measure q[2];"
)
ROTATION = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[0];"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url=database_url, fragment_bindings=16, max_attempts=3)


def store(factory: SessionFactory, settings: Settings, spec: dict[str, Any]) -> tuple[str, Any]:
    """Store and plan a one-fragment circuits job; returns its id and its fragment."""
    job_id = store_circuits_job(factory, CircuitsJob.model_validate(spec))
    plan_until(factory, settings, job_id)
    (fragment,) = fragments_of(factory, job_id)
    return job_id, fragment


def answer(
    fragment_id: str, job_id: str, results: Sequence[pb.BindingResult], attempt: int
) -> pb.FragmentResult:
    return pb.FragmentResult(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=attempt,
        node_id=f"node-{attempt}",
        success=pb.FragmentSuccess(results=list(results)),
    )


def expectations(rows: Sequence[Sequence[float]]) -> list[pb.BindingResult]:
    return [pb.BindingResult(expectations=pb.Expectations(values=r)) for r in rows]


def counts(rows: Sequence[dict[str, int]]) -> list[pb.BindingResult]:
    return [pb.BindingResult(counts=pb.Counts(counts=r)) for r in rows]


def state(factory: SessionFactory, job_id: str, fragment_id: str) -> dict[str, Any]:
    """What the store holds of the job and its fragment."""
    with factory() as session:
        job = repo.get_job(session, job_id)
        fragment = session.get(Fragment, fragment_id)
        assert fragment is not None
        outbox = [
            pb.Fragment.FromString(r.payload).attempt
            for r in repo.pending_outbox(session, 10_000)
            if r.fragment_id == fragment_id
        ]
        return {
            "status": job.status,
            "done": job.fragments_done,
            "result": job.result,
            "error": job.error,
            "redispatches": job.redispatches,
            "attempt": fragment.attempt,
            "fragment": fragment.status,
            "values": fragment.result,
            "outbox": outbox,
            "events": [(e.type, e.message) for e in repo.events_after(session, job_id, 0)],
        }


def test_a_forged_expectation_is_not_aggregated_and_the_fragment_runs_again(
    factory: SessionFactory, settings: Settings
) -> None:
    spec = {
        "result": {"type": "expectation", "observables": ["ZI", "IZ"]},
        "programs": [{"source": ROTATION, "bindings": [{"a": a} for a in (0.0, 1.0, 2.0)]}],
    }
    job_id, fragment = store(factory, settings, spec)
    forged = answer(fragment.id, job_id, expectations([[42.0, 1.0]] * 3), attempt=1)
    assert apply(factory, settings, forged) == "retried"
    after = state(factory, job_id, fragment.id)
    assert after["status"] == "RUNNING" and after["done"] == 0 and after["result"] is None
    assert after["fragment"] == "pending" and after["values"] is None
    assert after["attempt"] == 2 and after["redispatches"] == 1
    assert after["outbox"] == [1, 2]  # the first dispatch (never relayed here) and the retry
    kind, message = after["events"][-1]
    assert kind == "redispatched" and "attempt 2 of 3" in message
    assert "malformed result from node node-1" in message
    assert "binding 0: expectation value 42.0 of observable 0 is not in [-1, 1]" in message

    rows = [[math.cos(a), 1.0] for a in (0.0, 1.0, 2.0)]
    rows[0][0] = 1.0000000000000002  # float noise of an exact simulation counts
    assert apply(factory, settings, answer(fragment.id, job_id, expectations(rows), 2)) == (
        "counted"
    )
    done = state(factory, job_id, fragment.id)
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["programs"][0]["values"] == rows
    # the forged result sent again changes nothing
    assert apply(factory, settings, forged) == "duplicate"
    assert state(factory, job_id, fragment.id)["result"] == done["result"]


def test_forged_counts_are_not_aggregated_and_the_fragment_runs_again(
    factory: SessionFactory, settings: Settings
) -> None:
    spec = {
        "result": {"type": "counts"},
        "shots": 100,
        "programs": [{"source": MEASURED, "bindings": [{"a": 0.0}, {"a": math.pi / 2}]}],
    }
    job_id, fragment = store(factory, settings, spec)
    billion = answer(fragment.id, job_id, counts([{"11": 999999999}] * 2), attempt=1)
    assert apply(factory, settings, billion) == "retried"
    after = state(factory, job_id, fragment.id)
    assert (after["status"], after["attempt"], after["values"]) == ("RUNNING", 2, None)
    assert "counts sum to 999999999, not the fragment's 100 shots" in after["events"][-1][1]

    # the right total over every qubit: the program measures two of its three
    wide = answer(fragment.id, job_id, counts([{"000": 100}, {"000": 50, "110": 50}]), 2)
    assert apply(factory, settings, wide) == "retried"
    after = state(factory, job_id, fragment.id)
    assert (after["status"], after["attempt"], after["done"]) == ("RUNNING", 3, 0)
    assert "counts bitstring '000' is not 2 characters" in after["events"][-1][1]

    rows = [{"00": 100}, {"00": 48, "10": 52}]
    assert apply(factory, settings, answer(fragment.id, job_id, counts(rows), 3)) == "counted"
    done = state(factory, job_id, fragment.id)
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["programs"][0]["values"] == rows
    assert done["redispatches"] == 2


def test_forged_probabilities_are_not_aggregated(
    factory: SessionFactory, settings: Settings
) -> None:
    spec = {
        "result": {"type": "probabilities"},
        "programs": [{"source": ROTATION, "bindings": [{"a": math.pi / 2}]}],
    }
    job_id, fragment = store(factory, settings, spec)
    forged = pb.BindingResult(probabilities=pb.Probabilities(probabilities={"00": 0.9, "10": 0.9}))
    assert apply(factory, settings, answer(fragment.id, job_id, [forged], 1)) == "retried"
    after = state(factory, job_id, fragment.id)
    assert (after["status"], after["attempt"], after["values"]) == ("RUNNING", 2, None)
    assert "probabilities sum to 1.8, not 1" in after["events"][-1][1]
    right = {"00": 0.5000000000000001, "10": 0.4999999999999999}
    good = pb.BindingResult(probabilities=pb.Probabilities(probabilities=right))
    assert apply(factory, settings, answer(fragment.id, job_id, [good], 2)) == "counted"
    done = state(factory, job_id, fragment.id)
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["programs"][0]["values"] == [right]


def test_a_forged_last_attempt_fails_the_job_without_its_values(
    factory: SessionFactory, database_url: str
) -> None:
    settings = make_settings(database_url=database_url, fragment_bindings=16, max_attempts=1)
    spec = {
        "result": {"type": "expectation", "observables": ["ZI", "IZ"]},
        "programs": [{"source": ROTATION, "bindings": [{"a": 0.5}]}],
    }
    job_id, fragment = store(factory, settings, spec)
    forged = answer(fragment.id, job_id, expectations([[1.0, -42.0]]), attempt=1)
    assert apply(factory, settings, forged) == "failed"
    after = state(factory, job_id, fragment.id)
    assert after["status"] == "FAILED" and after["result"] is None and after["values"] is None
    assert "expectation value -42.0 of observable 1" in after["error"]


# ---------------------------------------------------------------- a training job's step


def classifier() -> dict[str, Any]:
    return {
        "kind": "train",
        "seed": 3,
        "model": {"qubits": 2, "layers": 1},
        "data": {"builtin": "moons", "samples": 8, "validation_fraction": 0.25},
        "training": {"loss": "bce", "epochs": 1, "batch_size": 2},
    }


def test_a_forged_training_result_is_not_aggregated_and_the_fragment_runs_again(
    factory: SessionFactory, settings: Settings
) -> None:
    job_id = str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.create_job(
            session,
            job_id=job_id,
            name="forged",
            kind="train",
            pool="local-sv",
            spec=TrainJob.model_validate(classifier()).model_dump(mode="json"),
            result_type="expectation",
            observables=1,
            bindings_total=0,
        )
    with session_scope(factory) as session:
        training_steps.begin(session, repo.lock_job(session, job_id), settings)
    with factory() as session:
        row = (
            session.execute(
                select(Fragment).where(Fragment.job_id == job_id).order_by(Fragment.binding_offset)
            )
            .scalars()
            .first()
        )
        assert row is not None and row.payload is not None
        fragment_id, message = row.id, pb.Fragment.FromString(row.payload)
    message.bindings.extend(expand_bindings(message.encoding))
    real = LocalExecutor("braket_sv").execute(message)
    forged = [
        pb.BindingResult(expectations=pb.Expectations(values=[42.0] * len(message.observables)))
        for _ in real
    ]
    assert apply(factory, settings, answer(fragment_id, job_id, forged, 1)) == "retried"
    after = state(factory, job_id, fragment_id)
    assert (after["attempt"], after["fragment"], after["values"], after["done"]) == (
        2,
        "pending",
        None,
        0,
    )
    assert "expectation value 42.0" in after["events"][-1][1]

    assert apply(factory, settings, answer(fragment_id, job_id, real, 2)) == "counted"
    done = state(factory, job_id, fragment_id)
    assert done["fragment"] == "done" and done["done"] == 1
    assert done["values"] == [list(r.expectations.values) for r in real]
