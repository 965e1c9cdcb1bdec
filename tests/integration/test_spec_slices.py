"""Windowed planning from spec slices writes exactly what whole-spec planning would."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, select

from orchestrator import windows
from orchestrator.fragments import payload as fragment_payload
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.planning import build_fragment, plan_fragments
from qorchestra.store import spec_slices
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.db import SessionFactory, make_session_factory, session_scope
from qorchestra.store.models import Fragment, Job, OutboxMessage
from tests.support.settings import make_settings
from tests.support.stored_jobs import store_circuits_job

pytestmark = pytest.mark.integration

TWO_INPUTS = "OPENQASM 3.0; input float a; input float bb; qubit[2] q; rx(a) q[0]; ry(bb) q[1];"
NO_INPUTS = "OPENQASM 3.0; qubit[2] q; h q[0];"
ONE_INPUT = "OPENQASM 3.0; input float a; qubit[2] q; rx(a) q[1];"

SPEC: dict[str, Any] = {
    "result": {"type": "expectation", "observables": ["ZI", "IZ"]},
    "programs": [
        {
            "source": TWO_INPUTS,
            "bindings": [{"bb": -i / 3, "a": i * 0.1 + 1e-12} for i in range(37)],
        },
        {"source": NO_INPUTS},
        {"source": ONE_INPUT, "bindings": [{"a": float(i)} for i in range(20)]},
        {"source": ONE_INPUT, "bindings": [{"a": 2.5e-300}]},
    ],
}
BINDINGS_PER_FRAGMENT = 4
WINDOW = 3  # fragments per window: windows start and end inside programs


@pytest.fixture
def factory(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


def create(factory: SessionFactory, spec: CircuitsJob) -> str:
    return store_circuits_job(factory, spec, name="slices")


def comparable(message: pb.Fragment) -> bytes:
    """A fragment's bytes without what differs between two plannings (its id, time and the
    nonce of its dispatch)."""
    message.ClearField("fragment_id")
    message.ClearField("dispatched_at")
    message.ClearField("nonce")
    return message.SerializeToString(deterministic=True)


def test_head_and_slices_read_the_stored_spec(factory: SessionFactory) -> None:
    spec = CircuitsJob.model_validate(SPEC)
    job_id = create(factory, spec)
    with session_scope(factory) as session:
        head, sizes = spec_slices.spec_head(session, job_id)
        assert sizes == [37, 0, 20, 1]
        assert all("bindings" not in p for p in head["programs"])
        stripped = CircuitsJob.model_validate(head)
        assert [p.source for p in stripped.programs] == [p.source for p in spec.programs]
        assert spec_slices.binding_slice(session, job_id, 0, 35, 4) == [
            dict(b) for b in spec.programs[0].bindings[35:]
        ]  # clipped at the end
        assert spec_slices.binding_slice(session, job_id, 1, 0, 1) == []
        assert spec_slices.binding_slice(session, job_id, 2, 3, 0) == []
        with pytest.raises(spec_slices.SpecMissing):
            spec_slices.spec_head(session, str(uuid.uuid4()))


@pytest.mark.parametrize("chunk_bindings", [4096, 5])  # one chunk a window; several
def test_windowed_planning_writes_the_whole_spec_plan(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, chunk_bindings: int
) -> None:
    monkeypatch.setattr(windows, "WRITE_CHUNK_BINDINGS", chunk_bindings)
    settings = make_settings(fragment_bindings=BINDINGS_PER_FRAGMENT)
    spec = CircuitsJob.model_validate(SPEC)
    job_id = create(factory, spec)
    plans = list(plan_fragments(spec, BINDINGS_PER_FRAGMENT))
    expected = [
        comparable(build_fragment(spec, plan, job_id=job_id, fragment_id="x", attempt=1))
        for plan in plans
    ]

    written = 0
    while True:  # window after window, each in its own transaction, as top-ups do
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            head = windows.cached_head(session, job)
            assert not any(p.bindings for p in head.spec.programs)  # never loaded whole
            assert windows.count_fragments(head.spec, BINDINGS_PER_FRAGMENT, head.sizes) == len(
                plans
            )
            count = windows.write_window(session, job, head, settings, written, WINDOW)
        if count == 0:
            break
        written += count
    assert written == len(plans)

    with session_scope(factory) as session:
        rows = session.execute(
            select(Fragment, OutboxMessage.payload)
            .join(OutboxMessage, OutboxMessage.fragment_id == Fragment.id)
            .where(Fragment.job_id == job_id)
            .order_by(Fragment.program_index, Fragment.binding_offset)
        ).all()
        assert [(f.program_index, f.binding_offset, f.binding_count) for f, _ in rows] == [
            (p.program_index, p.binding_offset, p.binding_count) for p in plans
        ]
        signer = control_plane_signer(session)
        sent = [(f.id, pb.Fragment.FromString(payload).nonce) for f, payload in rows]
        assert all(signer.answers(fragment_id, 1, nonce) for fragment_id, nonce in sent)
        assert [comparable(pb.Fragment.FromString(payload)) for _, payload in rows] == expected

        # Re-dispatch rebuilds each fragment from a slice: the same message, a later attempt.
        job = session.get(Job, job_id)
        assert job is not None
        for (fragment, _), plan, want in zip(rows, plans, expected, strict=True):
            fragment.attempt = 2
            again = fragment_payload(session, job, fragment)
            assert again.attempt == 2 and signer.answers(fragment.id, 2, again.nonce)
            whole = build_fragment(spec, plan, job_id=job_id, fragment_id="x", attempt=2)
            assert comparable(again) == comparable(whole)
            again.attempt = 1
            assert comparable(again) == want
    windows.forget(job_id)
