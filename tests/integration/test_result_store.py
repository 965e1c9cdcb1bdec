"""Postgres assembles a job's result exactly as ``assemble_result`` does in Python."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qorchestra.aggregation import StoredFragment, assemble_result
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import Job
from qorchestra.store.results import store_result
from tests.support.stored_jobs import (
    PROGRAM,
    apply,
    fragments_of,
    plan_until,
    submit,
    success_for,
)

pytestmark = pytest.mark.integration


def test_result_assembled_in_the_store_equals_the_python_one(
    factory: SessionFactory,
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"fragment_bindings": 3})
    programs = [
        {"source": PROGRAM, "bindings": [{"a": i / 7} for i in range(7)]},
        {"source": "OPENQASM 3.0; qubit[2] q; x q[0];", "bindings": []},
        {"source": PROGRAM, "bindings": [{"a": 0.25}, {"a": 0.5}]},
    ]
    job_id = submit(factory, programs=programs, shots=0)
    plan_until(factory, settings, job_id)
    fragments = fragments_of(factory, job_id)
    for f in reversed(fragments):  # out of order
        result = success_for(f, job_id, value=f.program_index / 4 + 0.125)
        assert apply(factory, settings, result) == "counted"
    with factory() as session:
        job = repo.get_job(session, job_id)
        assert job.status == "SUCCEEDED"
        stored = [
            StoredFragment(f.program_index, f.binding_offset, f.result or [])
            for f in repo.finished_fragments(session, job_id)
        ]
        expected = assemble_result(CircuitsJob.model_validate(job.spec), stored)
        assert job.result == expected
        assert [len(p["values"]) for p in expected["programs"]] == [7, 1, 2]


def test_missing_values_are_refused(
    factory: SessionFactory,
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"fragment_bindings": 3})
    job_id = submit(factory, bindings=7)
    plan_until(factory, settings, job_id)
    first = fragments_of(factory, job_id)[0]
    assert apply(factory, settings, success_for(first, job_id)) == "counted"
    with (
        pytest.raises(ValueError, match="program 0 has 3 values for 7 bindings"),
        session_scope(factory) as session,
    ):
        store_result(session, job_id)
    with factory() as session:
        assert session.execute(select(Job.result).where(Job.id == job_id)).scalar() is None
