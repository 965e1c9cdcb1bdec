"""Training steps are written in windows within the in-flight caps, like circuits jobs.

Real Postgres, no Kafka: the fragments' payloads are run here as a node would run them (encode,
execute on the local simulator) and their results applied through the aggregator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from nodes.encoding import expand_bindings
from nodes.executors.local import LocalExecutor
from orchestrator import dispatch, training_steps
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store import training as stored_training
from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import Fragment
from qorchestra.training.spec import TrainJob
from tests.support.settings import make_settings
from tests.support.stored_jobs import count_success
from tests.support.training import run_job

pytestmark = pytest.mark.integration

EXECUTOR = LocalExecutor("braket_sv")
CAP = 3


@pytest.fixture
def factory(database_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def classifier(seed: int, batch_size: int) -> dict[str, Any]:
    return {
        "kind": "train",
        "seed": seed,
        "model": {"qubits": 2, "layers": 1},
        "data": {"builtin": "moons", "samples": 12, "validation_fraction": 0.25},
        "training": {"loss": "bce", "epochs": 1, "batch_size": batch_size},
    }


def start(factory: SessionFactory, spec: dict[str, Any], settings: Settings) -> str:
    """Store a train job as the API does and start it as the planner does; returns its id."""
    job_id = str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.create_job(
            session,
            job_id=job_id,
            name="windowed",
            kind="train",
            pool="local-sv",
            spec=TrainJob.model_validate(spec).model_dump(mode="json"),
            result_type="expectation",
            observables=1,
            bindings_total=0,
        )
    with session_scope(factory) as session:
        training_steps.begin(session, repo.lock_job(session, job_id), settings)
    return job_id


def progress(factory: SessionFactory, job_id: str) -> dict[str, Any]:
    """The job's status, its open (pending or dispatched) fragments and its step's counts."""
    with factory() as session:
        job = repo.get_job(session, job_id)
        open_ = session.execute(
            select(func.count())
            .select_from(Fragment)
            .where(Fragment.job_id == job_id, Fragment.status.in_(repo.IN_FLIGHT))
        ).scalar_one()
        written = session.execute(
            select(func.count()).select_from(Fragment).where(Fragment.job_id == job_id)
        ).scalar_one()
        assert job.fragments_written == written  # the job's count matches its rows
        checkpoint = stored_training.checkpoint(session, job_id)
        return {
            "status": job.status,
            "open": open_,
            "written": written,
            "total": job.fragments_total,
            "step": checkpoint.step if checkpoint else None,
        }


def answer_open(factory: SessionFactory, job_id: str, settings: Settings) -> int:
    """Run every open fragment of the job as a node would and apply its result."""
    with factory() as session:
        payloads = session.execute(
            select(Fragment.payload).where(
                Fragment.job_id == job_id, Fragment.status.in_(repo.IN_FLIGHT)
            )
        ).scalars()
        fragments = [pb.Fragment.FromString(p) for p in payloads if p is not None]
    for fragment in fragments:
        fragment.bindings.extend(expand_bindings(fragment.encoding))
        count_success(factory, settings, job_id, fragment.fragment_id, EXECUTOR.execute(fragment))
    return len(fragments)


def test_a_big_training_step_is_written_in_windows_and_trains_the_same(
    factory: SessionFactory, database_url: str
) -> None:
    settings = make_settings(
        database_url=database_url, fragment_bindings=4, max_inflight_per_job=CAP
    )
    # big: a step of 9 samples x 9 variants in fragments of 4 bindings = 27 fragments
    big_spec, small_spec = classifier(seed=6, batch_size=9), classifier(seed=7, batch_size=1)
    big = start(factory, big_spec, settings)
    small = start(factory, small_spec, settings)
    first = progress(factory, big)
    # the whole step is counted, only a window is written; the other job got its own window
    assert first == {"status": "RUNNING", "open": CAP, "written": CAP, "total": 27, "step": 0}
    assert progress(factory, small)["open"] == CAP

    dispatch.top_up(factory, settings)  # nothing answered: nothing more is written
    assert progress(factory, big)["written"] == CAP

    rounds = 0
    while any(progress(factory, j)["status"] == "RUNNING" for j in (big, small)):
        for job_id in (big, small):
            answer_open(factory, job_id, settings)
        dispatch.top_up(factory, settings)
        for job_id in (big, small):
            assert progress(factory, job_id)["open"] <= CAP
        rounds += 1
        assert rounds < 200, "the jobs did not finish"
    # the big step took many windows: 27 fragments, at most 3 open at a time
    assert rounds > 27 // CAP

    for job_id, spec in ((big, big_spec), (small, small_spec)):
        with factory() as session:
            job = repo.get_job(session, job_id)
            assert job.status == "SUCCEEDED", job.status
            assert job.fragments_done == job.fragments_total
            weights = (job.result or {})["weights"]
        reference, _, _ = run_job(TrainJob.model_validate(spec))
        assert reference is not None and weights == pytest.approx(reference["weights"], abs=1e-9)
