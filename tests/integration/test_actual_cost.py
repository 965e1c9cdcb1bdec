"""Cost, reconciled: a job on an emulated pool (emu-garnet, priced like IQM Garnet) is charged
its estimate at submission; its agent reports what each fragment used, the orchestrator adds
it up once per fragment, and when the job ends the tenant pays the actual cost. A cancelled
job gives back what never ran; a forged usage report fails the attempt like a forged value.

Real Postgres; the job that succeeds also runs over real Kafka, on a node agent with Braket's
emulator of Garnet (no queue delay), its signed results applied as the results loop applies
them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from api.admission import estimate
from nodes.agent import NodeAgent
from nodes.executors.emulated import EmulatedExecutor
from orchestrator.results import apply_signed_result
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.jobs.kinds import job_kind
from qorchestra.kafka import Consumer, Producer, ensure_topics
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import OutboxMessage, Tenant
from tests.support.agents import DEADLINE_S, running
from tests.support.api import running_api
from tests.support.settings import enrolled, make_settings
from tests.support.stored_jobs import apply, fragments_of, plan_until
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:You are running a noise-free circuit"),
]

POOL = "emu-garnet"
PER_TASK, PER_SHOT = 0.3, 0.00145  # Garnet's price, as its profile carries it
SHOTS = 10
#: A Bell state in Garnet's native gates (tests/e2e/test_emulated_devices.py).
BELL = """OPENQASM 3.0;
input float theta;
qubit[2] q;
prx(theta, pi/2) q[0];
prx(-pi/2, pi/2) q[1];
cz q[0], q[1];
prx(pi/2, pi/2) q[1];
"""


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    """Fragments of two bindings, no emulated queue, a credential enrolled for emu-garnet."""
    made = make_settings(
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        fragment_bindings=2,
        max_attempts=3,
        emulator_queue_s={POOL: (0.0, 0.0)},
    )
    return enrolled(made, POOL)


def submit(factory: SessionFactory, settings: Settings, bindings: int) -> tuple[str, str, float]:
    """Store a capped counts job of a fresh tenant on emu-garnet, charged its estimate as the
    API's admission charges it; returns the job's id, its tenant and its estimate."""
    spec = CircuitsJob.model_validate(
        {
            "pool": POOL,
            "shots": SHOTS,
            "max_cost_usd": 5.0,
            "result": {"type": "counts"},
            "programs": [
                {"source": BELL, "bindings": [{"theta": 0.1 * i} for i in range(bindings)]}
            ],
        }
    )
    prepared = job_kind("circuits").prepare(spec, settings, lambda _id: None)
    cost = estimate(spec, settings, prepared)
    tenant, job_id = f"t-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    with session_scope(factory) as session:
        repo.lock_tenant(session, tenant).spent_usd += cost
        repo.create_job(
            session,
            job_id=job_id,
            name="cost",
            kind="circuits",
            pool=POOL,
            spec=spec.model_dump(mode="json"),
            result_type="counts",
            observables=0,
            bindings_total=bindings,
            tenant=tenant,
            cost_usd=cost,
        )
    return job_id, tenant, cost


def spent(factory: SessionFactory, tenant: str) -> float:
    with factory() as session:
        row = session.get(Tenant, tenant)
        assert row is not None
        return row.spent_usd


def costs(factory: SessionFactory, job_id: str) -> tuple[str, float, float]:
    with factory() as session:
        job = repo.get_job(session, job_id)
        return job.status, job.cost_usd, job.actual_cost_usd


def usage(tasks: int, shots: int, cost: float | None = None) -> pb.Usage:
    return pb.Usage(
        tasks=tasks,
        shots=shots,
        price_per_task_usd=PER_TASK,
        price_per_shot_usd=PER_SHOT,
        cost_usd=tasks * PER_TASK + shots * PER_SHOT if cost is None else cost,
    )


def counted(fragment_id: str, job_id: str, bindings: int, used: pb.Usage) -> pb.FragmentResult:
    """A first-attempt success: every shot measured 00, with ``used``."""
    results = [pb.BindingResult(counts=pb.Counts(counts={"00": SHOTS})) for _ in range(bindings)]
    return pb.FragmentResult(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=1,
        node_id="test-node",
        success=pb.FragmentSuccess(results=results),
        usage=used,
    )


@pytest.fixture
def results_reader(settings: Settings) -> Iterator[Consumer]:
    ensure_topics(settings, [POOL])
    consumer = Consumer(settings, [settings.topic("results")], group=None)
    yield consumer
    consumer.close()


def test_a_job_that_succeeds_pays_what_its_tasks_used(
    factory: SessionFactory,
    settings: Settings,
    results_reader: Consumer,
    database_url: str,
    kafka_bootstrap: str,
) -> None:
    job_id, tenant, cost = submit(factory, settings, bindings=3)
    # three tasks of 10 shots: $0.90 + $0.0435, rounded up to the cent
    assert cost == pytest.approx(0.95)
    assert spent(factory, tenant) == pytest.approx(0.95)
    plan_until(factory, settings, job_id)
    ids = {f.id for f in fragments_of(factory, job_id)}
    assert len(ids) == 2  # fragments of two bindings and one
    with factory() as session:
        messages = [
            (m.topic, m.key, m.payload)
            for m in session.execute(select(OutboxMessage)).scalars()
            if m.fragment_id in ids
        ]
    profile = settings.emulated_profile(POOL)
    assert profile is not None
    executor = EmulatedExecutor(profile, queue_s=(0.0, 0.0))
    producer = Producer(settings)
    envelopes: dict[str, signed_pb2.Signed] = {}
    try:
        with running(NodeAgent(settings, POOL, executor)):
            for topic, key, payload in messages:  # as the relay publishes them
                assert producer.send_and_wait(topic, key, pb.Fragment.FromString(payload))

            def all_results() -> bool:
                while (msg := results_reader.poll(0.05)) is not None:
                    envelope = signed_pb2.Signed.FromString(msg.value() or b"")
                    result = pb.FragmentResult.FromString(envelope.body)
                    if result.job_id == job_id:
                        envelopes[result.fragment_id] = envelope
                return envelopes.keys() == ids

            wait_until(all_results, DEADLINE_S, what="both fragments' results")
    finally:
        producer.close()
    reported = [pb.FragmentResult.FromString(e.body).usage for e in envelopes.values()]
    assert sorted((u.tasks, u.shots) for u in reported) == [(1, 10), (2, 20)]
    for envelope in envelopes.values():
        with session_scope(factory) as session:
            assert apply_signed_result(session, envelope, settings).kind == "counted"
    actual = 3 * PER_TASK + 30 * PER_SHOT
    status, estimate_usd, actual_usd = costs(factory, job_id)
    assert status == "SUCCEEDED"
    assert (estimate_usd, actual_usd) == (pytest.approx(0.95), pytest.approx(actual))
    assert spent(factory, tenant) == pytest.approx(actual)  # 0.9435: 0.0065 given back
    # a result delivered again changes nothing: neither the actual nor the tenant's spend
    for envelope in envelopes.values():
        with session_scope(factory) as session:
            assert apply_signed_result(session, envelope, settings).kind == "duplicate"
    assert costs(factory, job_id)[2] == pytest.approx(actual)
    assert spent(factory, tenant) == pytest.approx(actual)
    # the job and its result show the estimate against the actual
    with running_api(database_url, kafka_bootstrap) as api:
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
            answer = api.call("GET", path, api.admin_key)
            assert answer.status_code == 200, answer.text
            assert answer.json()["cost"] == {
                "estimate_usd": pytest.approx(0.95),
                "actual_usd": pytest.approx(actual),
            }


def test_a_cancelled_job_gives_back_what_never_ran(
    factory: SessionFactory, settings: Settings
) -> None:
    job_id, tenant, cost = submit(factory, settings, bindings=4)
    assert cost == pytest.approx(1.26)  # 4 x $0.30 + 40 x $0.00145 = $1.258, up to the cent
    plan_until(factory, settings, job_id)
    first, second = fragments_of(factory, job_id)
    assert apply(factory, settings, counted(first.id, job_id, 2, usage(2, 20))) == "counted"
    with session_scope(factory) as session:
        job = repo.lock_job(session, job_id)
        repo.set_status(session, job, JobStatus.CANCELLED, "by request", now=datetime.now(UTC))
    ran = 2 * PER_TASK + 20 * PER_SHOT
    assert costs(factory, job_id) == ("CANCELLED", pytest.approx(1.26), pytest.approx(ran))
    assert spent(factory, tenant) == pytest.approx(ran)
    # a late result of the other fragment counts for nothing
    late = counted(second.id, job_id, 2, usage(2, 20))
    assert apply(factory, settings, late) == "late"
    assert spent(factory, tenant) == pytest.approx(ran)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(usage(3, 20), id="more-tasks-than-executables"),
        pytest.param(usage(2, 21), id="more-shots-than-it-ran"),
        pytest.param(usage(2, 20, cost=-1.0), id="negative-cost"),
        pytest.param(usage(2, 20, cost=float("nan")), id="nan-cost"),
        pytest.param(usage(2, 20, cost=5.0), id="cost-not-its-sum"),
    ],
)
def test_a_forged_usage_fails_the_attempt_and_costs_nothing(
    factory: SessionFactory, settings: Settings, forged: pb.Usage
) -> None:
    job_id, tenant, cost = submit(factory, settings, bindings=2)
    plan_until(factory, settings, job_id)
    (fragment,) = fragments_of(factory, job_id)
    assert apply(factory, settings, counted(fragment.id, job_id, 2, forged)) == "retried"
    with factory() as session:
        *_, last = repo.events_after(session, job_id, 0)
        assert last.type == "redispatched" and "usage" in last.message, last.message
    assert costs(factory, job_id) == ("RUNNING", pytest.approx(cost), 0.0)
    honest = counted(fragment.id, job_id, 2, usage(2, 20))
    honest.attempt = 2
    assert apply(factory, settings, honest) == "counted"
    assert costs(factory, job_id)[0] == "SUCCEEDED"
    assert spent(factory, tenant) == pytest.approx(2 * PER_TASK + 20 * PER_SHOT)
